/**
 * The `ipadapters` parameter: the IP-Adapter with the keys the Python forks' config files use
 * (`ipadapter_model_path`, `image_encoder_path`, `style_image`, `scale`, `enabled`, `type`,
 * `weight_type`), plus weighted style images, the composition weight and the step range and curve.
 * One entry at most: the UNet carries one adapter's attention weights. Everything but the adapter's
 * paths and type is hot.
 */
import type { RgbImage } from '@streamdiffusion/core';
import { z } from 'zod';
import { STEP_SCHEDULES, WEIGHT_TYPES } from './weight-types.js';

const isPixels = (value: unknown): value is RgbImage =>
  typeof value === 'object' && value !== null && (value as RgbImage).data instanceof Uint8Array && typeof (value as RgbImage).width === 'number' && typeof (value as RgbImage).height === 'number';

/** Which images a field accepts: config files hold paths (or `data:` URLs); code may also pass pixels. */
export type StyleImageKinds = 'paths' | 'paths-or-pixels';

function imageField(kinds: StyleImageKinds) {
  const path = z.string().min(1);
  return kinds === 'paths' ? path : z.union([path, z.custom<RgbImage>(isPixels, { message: 'expected a file path, a data: URL, or RGB(A) pixels { data, width, height, channels }' })]);
}

/** One IP-Adapter entry. */
export function ipAdapterEntrySchema(kinds: StyleImageKinds = 'paths-or-pixels') {
  const image = imageField(kinds);
  return z
    .object({
      ipadapter_model_path: z
        .string()
        .min(1)
        .describe('The IP-Adapter: a folder holding image_projection/ (a model folder exported with one, or an adapter folder), or the image_projection folder itself.')
        .meta({ update: 'reload' }),
      image_encoder_path: z
        .string()
        .min(1)
        .optional()
        .describe("The CLIP vision encoder: a folder holding model.onnx (and preprocessor_config.json, here or in ../feature_extractor). Default: image_encoder/ beside the adapter's image_projection/.")
        .meta({ update: 'reload' }),
      type: z.enum(['regular', 'plus', 'faceid']).optional().describe('The adapter kind, as the forks write it; read from the adapter when left out. FaceID is not supported.').meta({ update: 'reload' }),
      style_image: image.optional().describe('The style image (a path, relative to the config file in configs).'),
      style_images: z
        .array(z.object({ image, weight: z.number().min(0).default(1).describe('Its share (weights are normalised).') }))
        .optional()
        .describe('Several style images, blended by weight (their CLIP embeddings are averaged); instead of style_image.'),
      scale: z.number().min(-1).max(5).default(1).describe('How strongly the style image steers (0 = not at all).'),
      enabled: z.boolean().default(true).describe('Off keeps the adapter loaded but feeds zero image tokens and zero scale.'),
      weight_type: z.enum(WEIGHT_TYPES).default('linear').describe('Per-layer preset (ComfyUI_IPAdapter_plus names): linear, style transfer, composition, …'),
      composition_scale: z.number().min(-1).max(5).optional().describe('Weight of the composition layers in the presets that have them (default: scale).'),
      step_schedule: z.enum(STEP_SCHEDULES).default('constant').describe('Curve of the weight over the denoising steps.'),
      start_at: z.number().min(0).max(1).default(0).describe('First fraction of the denoising steps it acts on.'),
      end_at: z.number().min(0).max(1).default(1).describe('Last fraction of the denoising steps it acts on.'),
    })
    .refine((entry) => entry.start_at <= entry.end_at, { message: 'start_at must not be after end_at', path: ['end_at'] })
    .refine((entry) => entry.style_image === undefined || entry.style_images === undefined, { message: 'give style_image or style_images, not both', path: ['style_images'] })
    .refine((entry) => entry.type !== 'faceid', { message: 'FaceID IP-Adapters (InsightFace embeddings) are not supported; use a regular or plus adapter', path: ['type'] });
}

type EntrySchema = ReturnType<typeof ipAdapterEntrySchema>;
export type IpAdapterEntry = z.output<EntrySchema>;
export type IpAdapterEntryInput = z.input<EntrySchema>;

/** The wrapper's parameters. */
export interface IpAdapterParameters {
  readonly ipadapters: readonly IpAdapterEntry[];
}

/** The `ipadapters` field, with the wrapper's initial list as its default. */
export function ipAdaptersField(initial: readonly IpAdapterEntry[], kinds: StyleImageKinds = 'paths-or-pixels') {
  return z
    .array(ipAdapterEntrySchema(kinds))
    .max(1, { message: 'one IP-Adapter per pipeline: the UNet carries one adapter’s attention weights' })
    .default(() => initial.map((entry) => ({ ...entry })))
    .describe('The IP-Adapter (one entry). Hot: style images, scale, weight type, schedule and enabled change between frames; a new adapter path or type needs a new pipeline.')
    .meta({ update: 'hot' });
}

/** The style images of an entry with their normalised weights (none when it has none). */
export function styleImagesOf(entry: IpAdapterEntry): { readonly image: string | RgbImage; readonly weight: number }[] {
  if (entry.style_image !== undefined) return [{ image: entry.style_image, weight: 1 }];
  const images = entry.style_images ?? [];
  const total = images.reduce((sum, item) => sum + item.weight, 0);
  if (total === 0) return [];
  return images.filter((item) => item.weight > 0).map((item) => ({ image: item.image, weight: item.weight / total }));
}
