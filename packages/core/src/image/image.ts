/**
 * Images in and out of the pipeline: uint8 RGB/RGBA buffers of any size and PNG/JPEG files, to and
 * from the `[1, 3, H, W]` tensors in [-1, 1] that the VAE takes and gives. Decoding, encoding and
 * resizing go through sharp (libvips).
 */
import { writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';
import { InvalidArgumentError } from '../errors/errors.js';
import type { HostTensor } from '../runtime/host-tensor.js';

/** Interleaved 8-bit pixels, row by row: RGB (3 channels) or RGBA (4). */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: 3 | 4;
}

/**
 * Where an image comes from: a file path or a `data:` URL (base64, as browsers and JSON messages
 * carry images), encoded bytes (PNG, JPEG, WebP…), or raw pixels.
 */
export type ImageSource = string | Uint8Array | RgbImage;

const DATA_URL = /^data:[^;,]*;base64,(.*)$/s;

function isRaw(source: ImageSource): source is RgbImage {
  return typeof source === 'object' && !(source instanceof Uint8Array);
}

function checkRaw(image: RgbImage): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InvalidArgumentError({ field: 'image.width/height', value: [width, height], expected: 'positive integers' });
  }
  if (channels !== 3 && channels !== 4) {
    throw new InvalidArgumentError({ field: 'image.channels', value: channels, expected: '3 (RGB) or 4 (RGBA)' });
  }
  if (data.length !== width * height * channels) {
    throw new InvalidArgumentError({
      field: 'image.data',
      value: `${data.length} bytes`,
      expected: `width × height × channels = ${width * height * channels} bytes`,
    });
  }
}

function open(source: ImageSource): sharp.Sharp {
  if (typeof source === 'string') {
    const data = DATA_URL.exec(source)?.[1];
    return sharp(data === undefined ? source : Buffer.from(data, 'base64'));
  }
  if (!isRaw(source)) return sharp(source);
  checkRaw(source);
  return sharp(source.data, { raw: { width: source.width, height: source.height, channels: source.channels } });
}

/** Decodes an image file or buffer to RGB pixels (alpha dropped; grey expanded). */
export async function readImage(source: ImageSource): Promise<RgbImage> {
  const { data, info } = await open(source).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: 3 };
}

/**
 * An image as RGB pixels at `width` × `height`: stretched as the pipeline stretches its input
 * (Lanczos, alpha dropped). Raw RGB pixels already at the size are returned as they are.
 */
export async function resizeImage(source: ImageSource, size: { readonly width: number; readonly height: number }): Promise<RgbImage> {
  const { width, height } = size;
  if (isRaw(source) && source.width === width && source.height === height && source.channels === 3) {
    checkRaw(source);
    return source;
  }
  const { data } = await open(source)
    .removeAlpha()
    .toColourspace('srgb')
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height, channels: 3 };
}

/**
 * An image as the VAE encoder's input: resized to `width` × `height` (stretched, as diffusers'
 * image processor does; Lanczos), RGB, `[1, 3, height, width]` float32 in [-1, 1].
 */
export async function imageToTensor(source: ImageSource, size: { readonly width: number; readonly height: number }): Promise<HostTensor<'float32'>> {
  const { width, height } = size;
  // Raw pixels already at the size (live video frames) need no resize: skip libvips' round trip.
  if (isRaw(source) && source.width === width && source.height === height) {
    checkRaw(source);
    return { type: 'float32', dims: [1, 3, height, width], data: planarValues(source.data, source.channels, width * height) };
  }
  const { data } = await resizeImage(source, size);
  return { type: 'float32', dims: [1, 3, height, width], data: planarValues(data, 3, width * height) };
}

/** Interleaved RGB(A) bytes → planar RGB channels, 0..255 → -1..1 (alpha dropped). */
function planarValues(data: Uint8Array, channels: number, plane: number): Float32Array {
  const values = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel += 1) {
    const offset = channel * plane;
    for (let pixel = 0; pixel < plane; pixel += 1) values[offset + pixel] = data[pixel * channels + channel]! / 127.5 - 1;
  }
  return values;
}

/**
 * A decoded `[1, 3, H, W]` tensor in [-1, 1] as RGB pixels: (x / 2 + 0.5) clamped to [0, 1],
 * × 255, rounded half to even — diffusers' postprocessing, step for step in float32.
 */
export function tensorToImage(values: Float32Array, dims: readonly number[]): RgbImage {
  const [batch, channels, height, width] = dims;
  if (dims.length !== 4 || batch !== 1 || channels !== 3 || height === undefined || width === undefined) {
    throw new InvalidArgumentError({ field: 'dims', value: dims, expected: '[1, 3, height, width]' });
  }
  const plane = width * height;
  const data = new Uint8Array(plane * 3);
  for (let pixel = 0; pixel < plane; pixel += 1) {
    for (let channel = 0; channel < 3; channel += 1) {
      // float32 steps and round-half-to-even, as numpy does it in diffusers' postprocess.
      const value = Math.min(Math.max(Math.fround(Math.fround(values[channel * plane + pixel]! / 2) + 0.5), 0), 1);
      data[pixel * 3 + channel] = roundHalfToEven(Math.fround(value * 255));
    }
  }
  return { data, width, height, channels: 3 };
}

function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Encodes pixels as PNG or JPEG (by the file's extension) and writes them. */
export async function writeImage(path: string, image: RgbImage, options: { readonly quality?: number } = {}): Promise<void> {
  const extension = extname(path).toLowerCase();
  const pipeline = open(image);
  let encoded: Buffer;
  if (extension === '.png') encoded = await pipeline.png().toBuffer();
  else if (extension === '.jpg' || extension === '.jpeg') encoded = await pipeline.jpeg({ quality: options.quality ?? 90 }).toBuffer();
  else throw new InvalidArgumentError({ field: 'path', value: path, expected: 'a file name ending in .png, .jpg or .jpeg' });
  await writeFile(path, encoded);
}
