import { resizeImage, type RgbImage } from '@streamdiffusion/core';

/** RGBA → RGB, alpha ignored (not composited): a control image is about the colours alone. */
function withoutAlpha(frame: RgbImage): RgbImage {
  if (frame.channels === 3) return frame;
  const pixels = frame.width * frame.height;
  const data = new Uint8Array(pixels * 3);
  for (let pixel = 0; pixel < pixels; pixel += 1) {
    data[pixel * 3] = frame.data[pixel * 4]!;
    data[pixel * 3 + 1] = frame.data[pixel * 4 + 1]!;
    data[pixel * 3 + 2] = frame.data[pixel * 4 + 2]!;
  }
  return { data, width: frame.width, height: frame.height, channels: 3 };
}

/**
 * The frame as RGB at `size` (core's `resizeImage`: Lanczos), always in pixels of its own: a frame
 * already at the size is copied, because a preprocessor must not hand back the caller's buffer
 * (video sources reuse theirs for the next frame). Alpha is dropped here first, because libvips
 * resizes RGBA premultiplied and so darkens the colours of translucent pixels.
 */
export async function frameAtSize(frame: RgbImage, size: { readonly width: number; readonly height: number }): Promise<RgbImage> {
  const resized = await resizeImage(withoutAlpha(frame), size);
  return resized.data === frame.data ? { ...resized, data: resized.data.slice() } : resized;
}
