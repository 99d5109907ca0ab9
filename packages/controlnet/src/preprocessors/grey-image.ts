/** Grey images: one byte per pixel, row by row. Control images carry them in all three channels. */
import type { RgbImage } from '@streamdiffusion/core';

/**
 * RGB(A) pixels → grey, exactly as OpenCV 4's `cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)` does for
 * 8-bit images: fixed point with 15 fractional bits, `(9798 R + 19235 G + 3735 B + 2^14) >> 15`
 * (0.299, 0.587, 0.114 rounded to /32768; checked equal to OpenCV 4.6 on all 2^24 colours by
 * scripts/record-canny-goldens.py). Alpha is ignored.
 */
export function rgbToGrey(image: RgbImage): Uint8Array {
  const { data, channels } = image;
  const pixels = image.width * image.height;
  const grey = new Uint8Array(pixels);
  for (let pixel = 0, offset = 0; pixel < pixels; pixel += 1, offset += channels) {
    grey[pixel] = (9798 * data[offset]! + 19235 * data[offset + 1]! + 3735 * data[offset + 2]! + 16384) >> 15;
  }
  return grey;
}

/** A grey image as RGB pixels, the grey value in all three channels. */
export function greyToRgb(grey: Uint8Array, size: { readonly width: number; readonly height: number }): RgbImage {
  const data = new Uint8Array(grey.length * 3);
  for (let pixel = 0; pixel < grey.length; pixel += 1) {
    const value = grey[pixel]!;
    data[pixel * 3] = value;
    data[pixel * 3 + 1] = value;
    data[pixel * 3 + 2] = value;
  }
  return { data, width: size.width, height: size.height, channels: 3 };
}
