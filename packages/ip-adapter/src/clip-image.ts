/**
 * Style images as the CLIP vision encoder takes them, following the `preprocessor_config.json` that
 * transformers' `CLIPImageProcessor` saves: RGB, the shortest edge resized to `size` (bicubic,
 * aspect kept), a centre crop of `crop_size`, values rescaled to [0, 1] and normalised with the
 * CLIP mean and standard deviation. Images are decoded by core's `readImage` (every source it
 * takes, `data:` URLs included) and resized by sharp (libvips).
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, ModelFolderError, readImage, type ImageSource } from '@streamdiffusion/core';
import sharp from 'sharp';
import { z } from 'zod';

/** An image for the encoder: a file path, a `data:` URL, encoded bytes, or raw pixels (core's `ImageSource`). */
export type StyleImageSource = ImageSource;

const sizeSchema = z.union([z.number().int().positive(), z.object({ shortest_edge: z.number().int().positive() }), z.object({ height: z.number().int().positive(), width: z.number().int().positive() })]);

const preprocessorSchema = z.looseObject({
  do_resize: z.boolean().default(true),
  size: sizeSchema.default({ shortest_edge: 224 }),
  do_center_crop: z.boolean().default(true),
  crop_size: sizeSchema.default({ height: 224, width: 224 }),
  do_rescale: z.boolean().default(true),
  rescale_factor: z.number().positive().default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: z.array(z.number()).length(3).default([0.48145466, 0.4578275, 0.40821073]),
  image_std: z.array(z.number()).length(3).default([0.26862954, 0.26130258, 0.27577711]),
});

/** What the encoder's preprocessing does, read from `preprocessor_config.json`. */
export interface ClipPreprocessing {
  /** The shortest edge after resizing (0: no resize). */
  readonly shortestEdge: number;
  /** The crop, `[height, width]` (the encoder's input size). */
  readonly crop: readonly [number, number];
  readonly rescale: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

const edgeOf = (size: z.infer<typeof sizeSchema>): number => (typeof size === 'number' ? size : 'shortest_edge' in size ? size.shortest_edge : Math.min(size.height, size.width));
const cropOf = (size: z.infer<typeof sizeSchema>): [number, number] =>
  typeof size === 'number' ? [size, size] : 'shortest_edge' in size ? [size.shortest_edge, size.shortest_edge] : [size.height, size.width];

/**
 * Reads a `preprocessor_config.json`.
 * @throws {ModelFolderError} when it is missing, not JSON, or not a CLIP image processor's config.
 */
export async function readClipPreprocessing(path: string): Promise<ClipPreprocessing> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new ModelFolderError({ problem: (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing-file' : 'bad-config', path, message: 'the image encoder needs its preprocessor_config.json (CLIPImageProcessor)', cause: error });
  }
  const parsed = preprocessorSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ModelFolderError({ problem: 'bad-config', path, message: `"${issue.path.join('.')}" ${issue.message}` });
  }
  const config = parsed.data;
  const [meanR, meanG, meanB] = config.do_normalize ? config.image_mean : [0, 0, 0];
  const [stdR, stdG, stdB] = config.do_normalize ? config.image_std : [1, 1, 1];
  return {
    shortestEdge: config.do_resize ? edgeOf(config.size) : 0,
    crop: config.do_center_crop ? cropOf(config.crop_size) : cropOf(config.size),
    rescale: config.do_rescale ? config.rescale_factor : 1,
    mean: [meanR!, meanG!, meanB!],
    std: [stdR!, stdG!, stdB!],
  };
}

/**
 * A style image → the encoder's `pixel_values`, `[3, crop height, crop width]` float32.
 * @throws {InvalidArgumentError} naming the image when it cannot be read or decoded.
 */
export async function clipPixelValues(source: StyleImageSource, preprocessing: ClipPreprocessing, what = 'style image'): Promise<Float32Array> {
  const [cropHeight, cropWidth] = preprocessing.crop;
  let pixels: Buffer;
  try {
    const decoded = await readImage(source);
    const { width, height } = decoded;
    const image = sharp(decoded.data, { raw: { width, height, channels: decoded.channels } });
    let resized = image;
    let [newWidth, newHeight] = [width, height];
    if (preprocessing.shortestEdge > 0) {
      // transformers' get_resize_output_image_size: the short side becomes `shortest_edge`, the long one int(edge · long / short).
      const edge = preprocessing.shortestEdge;
      [newWidth, newHeight] = width <= height ? [edge, Math.trunc((edge * height) / width)] : [Math.trunc((edge * width) / height), edge];
      resized = image.resize(newWidth, newHeight, { fit: 'fill', kernel: 'cubic' });
    }
    // transformers' center_crop: top = (height − crop) // 2, left likewise (an image smaller than the crop is padded with zeros).
    const buffer = await resized.raw().toBuffer({ resolveWithObject: true });
    pixels = centreCrop(buffer.data, newWidth, newHeight, cropWidth, cropHeight);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw error;
    const shown = typeof source === 'string' ? (source.startsWith('data:') ? `${source.slice(0, 32)}…` : source) : 'the given bytes';
    throw new InvalidArgumentError({ field: what, value: shown, expected: `an image file, data: URL or pixels sharp can decode (${(error as Error).message})` });
  }
  const plane = cropWidth * cropHeight;
  const values = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel += 1) {
    const mean = preprocessing.mean[channel]!;
    const std = preprocessing.std[channel]!;
    for (let pixel = 0; pixel < plane; pixel += 1) values[channel * plane + pixel] = (pixels[pixel * 3 + channel]! * preprocessing.rescale - mean) / std;
  }
  return values;
}

function centreCrop(data: Buffer, width: number, height: number, cropWidth: number, cropHeight: number): Buffer {
  if (width === cropWidth && height === cropHeight) return data;
  const out = Buffer.alloc(cropWidth * cropHeight * 3);
  const top = Math.floor((height - cropHeight) / 2);
  const left = Math.floor((width - cropWidth) / 2);
  for (let y = 0; y < cropHeight; y += 1) {
    const sourceY = y + top;
    if (sourceY < 0 || sourceY >= height) continue;
    for (let x = 0; x < cropWidth; x += 1) {
      const sourceX = x + left;
      if (sourceX < 0 || sourceX >= width) continue;
      data.copy(out, (y * cropWidth + x) * 3, (sourceY * width + sourceX) * 3, (sourceY * width + sourceX) * 3 + 3);
    }
  }
  return out;
}
