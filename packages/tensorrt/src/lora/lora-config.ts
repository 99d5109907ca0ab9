/**
 * LoRAs in config files: `loras: [{ path, scale }]`, or the Python forks' `lora_dict: { path: scale }`;
 * each path found like the config's `model_id` (beside the config file, or in `modelsDir`).
 */
import { resolveConfigModelPath, type LoadedConfig, type WrapperConfigFields } from '@streamdiffusion/core';
import { z } from 'zod';
import { lorasSchema, type LoraEntry } from './hot-lora.js';

/** The config keys for LoRAs; pass them to `loadConfig` as `wrapperParameters`. */
export const loraConfigFields: WrapperConfigFields = Object.freeze({
  loras: lorasSchema.optional(),
  lora_dict: z
    .record(z.string().min(1), z.number().min(-10).max(10))
    .optional()
    .describe("The Python forks' form of `loras`: { <.safetensors file>: scale }, merged after `loras`."),
});

/** The LoRA set a config loaded with {@link loraConfigFields} asks for, its files found. */
export async function lorasFromConfig(loaded: LoadedConfig, options: { readonly modelsDir?: string } = {}): Promise<Required<LoraEntry>[]> {
  const listed = lorasSchema.parse(loaded.config.loras ?? []);
  const dictionary = Object.entries((loaded.config.lora_dict ?? {}) as Record<string, number>);
  const where = options.modelsDir === undefined ? {} : { modelsDir: options.modelsDir };
  const entries = [
    ...listed.map((entry, index) => ({ path: entry.path, scale: entry.scale, keyPath: ['loras', index, 'path'] })),
    ...dictionary.map(([path, scale]) => ({ path, scale, keyPath: ['lora_dict', path] })),
  ];
  return await Promise.all(entries.map(async ({ path, scale, keyPath }) => ({ path: await resolveConfigModelPath(loaded, path, { keyPath, file: true, ...where }), scale })));
}
