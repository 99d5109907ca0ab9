/**
 * `ipadapters:` in config files, as the Python forks write it: the field to hand `loadConfig`, and
 * the wrapper a loaded config asks for, with the adapter and encoder found as the config's own
 * `model_id` is and style images read relative to the config file.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, resolveConfigModelPath, type LoadedConfig, type WrapperConfigFields } from '@streamdiffusion/core';
import { ipAdaptersField, type IpAdapterEntry } from './ip-adapter-parameters.js';
import { createIpAdapter, type IpAdapterWrapper } from './ip-adapter-wrapper.js';

/**
 * The IP-Adapter wrapper's config-file field, for `loadConfig`, `saveConfig` and `configJsonSchema`
 * (`{ wrapperParameters: ipAdapterConfigFields }`). With it, `ipadapters:` is validated with its line
 * and key, and the forks' `use_ipadapter: false` turns it off. Style images are paths (or `data:` URLs).
 */
export const ipAdapterConfigFields: WrapperConfigFields = Object.freeze({ ipadapters: ipAdaptersField([], 'paths') });

const WEIGHT_FILES = /\.(safetensors|bin|pt|pth)$/i;

/**
 * The IP-Adapter wrapper of a config loaded with {@link ipAdapterConfigFields}, or undefined when the
 * config has none (or `use_ipadapter: false`). `ipadapter_model_path` and `image_encoder_path` are
 * found beside the config file or in `modelsDir` (Hugging Face ids as `owner--name` there), like
 * `model_id`; style image paths are relative to the config file.
 * @throws {ConfigError} naming the file, line and key of an adapter that is not there, with every path tried.
 */
export async function ipAdapterFromConfig(loaded: LoadedConfig, options: { readonly modelsDir?: string } = {}): Promise<IpAdapterWrapper | undefined> {
  const entries: readonly IpAdapterEntry[] = ipAdaptersField([], 'paths').parse(loaded.config.ipadapters ?? []);
  const [entry] = entries;
  if (entry === undefined) return undefined;
  const find = async (id: string, key: string): Promise<string> => {
    const keyPath = ['ipadapters', 0, key];
    if (WEIGHT_FILES.test(id)) {
      const line = loaded.lineOf(keyPath);
      throw new ConfigError({
        file: loaded.file,
        ...(line === undefined ? {} : { line }),
        key: keyPath.join('.'),
        message: `${id} is a PyTorch weights file; export it into the model folder first (streamdiffusion_export convert --ip-adapter <file> --image-encoder <dir>) and name that folder here`,
      });
    }
    return resolveConfigModelPath(loaded, id, { keyPath, ...(options.modelsDir === undefined ? {} : { modelsDir: options.modelsDir }) });
  };
  const here = dirname(loaded.file);
  const local = (image: string): string => (image.startsWith('data:') || isAbsolute(image) ? image : resolve(here, image));
  const found: IpAdapterEntry = {
    ...entry,
    ipadapter_model_path: await find(entry.ipadapter_model_path, 'ipadapter_model_path'),
    ...(entry.image_encoder_path === undefined ? {} : { image_encoder_path: await find(entry.image_encoder_path, 'image_encoder_path') }),
    ...(typeof entry.style_image === 'string' ? { style_image: local(entry.style_image) } : {}),
    ...(entry.style_images === undefined ? {} : { style_images: entry.style_images.map((item) => ({ ...item, image: typeof item.image === 'string' ? local(item.image) : item.image })) }),
  };
  return createIpAdapter({ ipadapters: [found] });
}
