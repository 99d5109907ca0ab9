/**
 * The `controlnets` parameter: a list of ControlNets with the keys the Python forks' config files use
 * (`model_id`, `conditioning_scale`, `enabled`, `preprocessor`, `preprocessor_params`,
 * `control_guidance_start`, `control_guidance_end`). The whole list is hot: entries are matched by
 * `model_id`, so an update with a new `model_id` loads that ControlNet beside the running stream and
 * one without it removes it.
 */
import { z } from 'zod';

/** One ControlNet entry. */
export const controlNetEntrySchema = z
  .object({
    model_id: z.string().min(1).describe('The ControlNet: a folder holding model.onnx (made by the export tool), or an .onnx file.'),
    conditioning_scale: z.number().min(0).max(10).default(1).describe('How strongly it steers: its residuals are multiplied by this (0 = off).'),
    enabled: z.boolean().default(true).describe('Off keeps the model loaded but feeds nothing from it.'),
    preprocessor: z.string().default('passthrough').describe('How a frame becomes its control image (canny, depth, lineart, feedback, external, passthrough).'),
    preprocessor_params: z.record(z.string(), z.unknown()).default({}).describe("The preprocessor's parameters, checked against its own schema."),
    preprocessor_model: z.string().optional().describe('Model folder or .onnx file for preprocessors that run a model (depth, lineart).'),
    control_guidance_start: z.number().min(0).max(1).default(0).describe('First fraction of the denoising steps it acts on (0 = from the first).'),
    control_guidance_end: z.number().min(0).max(1).default(1).describe('Last fraction of the denoising steps it acts on (1 = to the last).'),
  })
  .refine((entry) => entry.control_guidance_start <= entry.control_guidance_end, {
    message: 'control_guidance_start must not be after control_guidance_end',
    path: ['control_guidance_end'],
  });

export type ControlNetEntry = z.output<typeof controlNetEntrySchema>;
export type ControlNetEntryInput = z.input<typeof controlNetEntrySchema>;

/** The wrapper's parameters. */
export interface ControlNetParameters {
  readonly controlnets: readonly ControlNetEntry[];
}

/** The `controlnets` field, with the wrapper's initial list as its default. */
export function controlNetsField(initial: readonly ControlNetEntry[]) {
  return z
    .array(controlNetEntrySchema)
    .default(() => initial.map((entry) => ({ ...entry })))
    .refine((entries) => new Set(entries.map((entry) => entry.model_id)).size === entries.length, {
      message: 'each model_id may appear once (entries are matched by model_id)',
    })
    .describe('The ControlNets, in order. Hot: scales, switches and preprocessors change between frames; a new model_id loads beside the running stream, a missing one is removed.')
    .meta({ update: 'hot' });
}
