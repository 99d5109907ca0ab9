/**
 * Where an IP-Adapter's files are, and what they say (the export tool writes them; see
 * tools/export/README.md): `image_projection/` (the adapter's projection and its config),
 * `image_encoder/` (CLIP vision) with `feature_extractor/preprocessor_config.json`, and in the model
 * folder `unet/ip_adapter.json` (the UNet's cross-attention layers and which adapter's attention
 * weights it carries).
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ModelFolderError } from '@streamdiffusion/core';
import { z } from 'zod';

/** `image_projection/config.json`. */
const projectionConfigSchema = z.looseObject({
  kind: z.enum(['regular', 'plus']),
  image_tokens: z.number().int().positive(),
  input: z.enum(['image_embeds', 'penultimate_hidden_states']),
  cross_attention_dim: z.number().int().positive(),
  attention_id: z.string().min(1),
  source: z.string().optional(),
});
export type ProjectionConfig = z.output<typeof projectionConfigSchema>;

/** `unet/ip_adapter.json`. */
const unetConfigSchema = z.looseObject({
  scale_input: z.string().min(1),
  layers: z.array(z.string().min(1)).min(1),
  image_tokens: z.number().int().positive(),
  kind: z.enum(['regular', 'plus']),
  attention_id: z.string().min(1),
  source: z.string().optional(),
});
export type UnetIpAdapterConfig = z.output<typeof unetConfigSchema>;

/** An adapter's files, found. */
export interface AdapterFiles {
  /** `image_projection/model.onnx`. */
  readonly projection: string;
  readonly projectionConfig: ProjectionConfig;
  /** `image_encoder/model.onnx`. */
  readonly encoder: string;
  /** The encoder's `preprocessor_config.json`. */
  readonly preprocessor: string;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true;
}

async function readConfig<T>(path: string, schema: z.ZodType<T>, what: string): Promise<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ModelFolderError({ problem: missing ? 'missing-file' : 'bad-config', path, message: missing ? `${what} is missing` : `not valid JSON: ${(error as Error).message}`, cause: error });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ModelFolderError({ problem: 'bad-config', path, message: `"${issue.path.join('.')}" ${issue.message} (${what}, written by the export tool)` });
  }
  return parsed.data;
}

/**
 * Finds an adapter's files: `adapterPath` is a folder holding `image_projection/` (a model folder
 * exported with an adapter, or an adapter folder) or the `image_projection` folder itself;
 * `encoderPath` a folder holding the encoder's `model.onnx` (default: `image_encoder/` beside
 * `image_projection/`), its `preprocessor_config.json` there or in `../feature_extractor/`.
 * @throws {ModelFolderError} naming each path looked at when a file is not there.
 */
export async function findAdapterFiles(adapterPath: string, encoderPath?: string): Promise<AdapterFiles> {
  const root = resolve(adapterPath);
  const nested = join(root, 'image_projection');
  const projectionFolder = (await isFile(join(nested, 'model.onnx'))) ? nested : root;
  const projection = join(projectionFolder, 'model.onnx');
  if (!(await isFile(projection))) {
    throw new ModelFolderError({ problem: 'missing-file', path: join(nested, 'model.onnx'), message: `no IP-Adapter projection here (looked for ${join(nested, 'model.onnx')} and ${projection}); export one with streamdiffusion_export --ip-adapter` });
  }
  const projectionConfig = await readConfig(join(projectionFolder, 'config.json'), projectionConfigSchema, "the projection's config");
  const encoderFolder = encoderPath === undefined ? join(dirname(projectionFolder), 'image_encoder') : resolve(encoderPath);
  const encoder = encoderFolder.endsWith('.onnx') ? encoderFolder : join(encoderFolder, 'model.onnx');
  if (!(await isFile(encoder))) {
    throw new ModelFolderError({ problem: 'missing-file', path: encoder, message: `the CLIP image encoder is not here${encoderPath === undefined ? ' (give image_encoder_path)' : ''}` });
  }
  const candidates = [join(dirname(encoder), 'preprocessor_config.json'), join(dirname(dirname(encoder)), 'feature_extractor', 'preprocessor_config.json')];
  let preprocessor: string | undefined;
  for (const candidate of candidates) if (preprocessor === undefined && (await isFile(candidate))) preprocessor = candidate;
  if (preprocessor === undefined) {
    throw new ModelFolderError({ problem: 'missing-file', path: candidates[0]!, message: `the image encoder's preprocessor_config.json is missing (looked at ${candidates.join(' and ')})` });
  }
  return { projection, projectionConfig, encoder, preprocessor };
}

/**
 * Reads `unet/ip_adapter.json` of a model folder.
 * @throws {ModelFolderError} when it is missing (the UNet was not exported with an IP-Adapter) or malformed.
 */
export async function readUnetIpAdapter(modelRoot: string): Promise<UnetIpAdapterConfig> {
  return readConfig(join(modelRoot, 'unet', 'ip_adapter.json'), unetConfigSchema, "the UNet's IP-Adapter description (export the model with an IP-Adapter)");
}
