/**
 * `controlnets:` in config files, as the Python forks write it: the field to hand `loadConfig`, and
 * the wrapper a loaded config asks for, with each ControlNet found as the config's own `model_id` is.
 */
import { resolveConfigModelPath, type LoadedConfig, type WrapperConfigFields } from '@streamdiffusion/core';
import { controlNetsField, type ControlNetEntry } from './controlnet-parameters.js';
import { createControlNet, type ControlNetOptions, type ControlNetWrapper } from './controlnet-wrapper.js';

/**
 * The ControlNet wrapper's config-file field, for `loadConfig`, `saveConfig` and `configJsonSchema`
 * (`{ wrapperParameters: controlNetConfigFields }`). With it, `controlnets:` is validated with its
 * line and key, and the forks' `use_controlnet: false` turns the list off.
 */
export const controlNetConfigFields: WrapperConfigFields = Object.freeze({ controlnets: controlNetsField([]) });

/**
 * The ControlNet wrapper of a config loaded with {@link controlNetConfigFields}: its `controlnets`,
 * each `model_id` and `preprocessor_model` found beside the config file or in `modelsDir` (Hugging
 * Face ids as `owner--name` there), like the config's `model_id`.
 * @throws {ConfigError} naming the file, line and key of a ControlNet that is not there, with every path tried.
 */
export async function controlNetFromConfig(
  loaded: LoadedConfig,
  options: { readonly modelsDir?: string } & Pick<ControlNetOptions, 'preprocessors'> = {},
): Promise<ControlNetWrapper> {
  const entries: readonly ControlNetEntry[] = controlNetsField([]).parse(loaded.config.controlnets ?? []);
  const find = (id: string, keyPath: readonly PropertyKey[]) =>
    resolveConfigModelPath(loaded, id, { keyPath, file: true, ...(options.modelsDir === undefined ? {} : { modelsDir: options.modelsDir }) });
  const controlnets = await Promise.all(
    entries.map(async (entry, index) => ({
      ...entry,
      model_id: await find(entry.model_id, ['controlnets', index, 'model_id']),
      ...(entry.preprocessor_model === undefined ? {} : { preprocessor_model: await find(entry.preprocessor_model, ['controlnets', index, 'preprocessor_model']) }),
    })),
  );
  return createControlNet({ controlnets, ...(options.preprocessors === undefined ? {} : { preprocessors: options.preprocessors }) });
}
