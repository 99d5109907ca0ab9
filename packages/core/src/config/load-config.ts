/**
 * Config files in the Python StreamDiffusion forks' format (YAML or JSON): read, validated against
 * the parameter schema, with line numbers for every warning and error, and written back.
 */
import { randomUUID } from 'node:crypto';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, stringify, type Document } from 'yaml';
import { z } from 'zod';
import type { StreamDiffusionOptions } from '../pipeline/stream-diffusion.js';
import { InvalidArgumentError } from '../errors/errors.js';
import { ConfigError } from './config-error.js';
import { checkScheduleIndices, streamParametersShape } from './stream-parameters.js';
import { valueAt } from './zod-issues.js';

/** Acceleration values of the Python forks; only `none` runs here (no TensorRT engines, no xformers). */
export const ACCELERATIONS = Object.freeze(['none', 'xformers', 'tensorrt', 'sfast'] as const);

/** Which pipeline entry a config is meant for, as the forks' `mode` key says. */
export const CONFIG_MODES = Object.freeze(['img2img', 'txt2img'] as const);

/** The config file's own fields: the model and how it runs, then the pipeline's parameters. */
const configShape = {
    model_id: z
      .string()
      .min(1)
      .describe(
        'Model folder: a path (relative to the config file), or a name looked up as <modelsDir>/<model_id> and <modelsDir>/<model_id with "/" as "--">.',
      )
      .meta({ update: 'reload' }),
    mode: z.enum(CONFIG_MODES).default('img2img').describe('Which pipeline entry the config is for: img2img or txt2img.').meta({ update: 'reload' }),
    acceleration: z
      .enum(ACCELERATIONS)
      .default('none')
      .describe('Python-side acceleration; only "none" is supported here, other values are accepted with a warning.')
      .meta({ update: 'rebuild' }),
    ...streamParametersShape,
};

/** The full config file: the pipeline's parameters plus the model and how it runs. */
export const streamDiffusionConfigSchema = z.object(configShape).superRefine(checkScheduleIndices);

/**
 * Parameter fields of wrappers (a wrapper's `parameters`, e.g. ControlNet's `controlnets`) that a
 * config file may hold beside the pipeline's: honoured and validated like them instead of warned about.
 */
export type WrapperConfigFields = Readonly<Record<string, z.ZodType>>;

/** The config schema with wrappers' fields added; a field the config already has is refused. */
function configSchemaWith(wrapperParameters: WrapperConfigFields | undefined) {
  if (wrapperParameters === undefined) return streamDiffusionConfigSchema;
  for (const key of Object.keys(wrapperParameters)) {
    if (Object.hasOwn(configShape, key)) throw new InvalidArgumentError({ field: 'wrapperParameters', value: key, expected: 'keys the config does not already have' });
  }
  return z.object({ ...configShape, ...wrapperParameters }).superRefine(checkScheduleIndices);
}

/** A validated config, defaults filled in. */
export type StreamDiffusionConfig = z.output<typeof streamDiffusionConfigSchema>;

/** A config as written in a file: only `model_id` is required. */
export type StreamDiffusionConfigInput = z.input<typeof streamDiffusionConfigSchema>;

/**
 * Keys of the Python forks we know but do not support yet: each is reported as a warning with its
 * line rather than silently dropped, so nobody believes a ControlNet is running when it is not.
 */
export const UNSUPPORTED_CONFIG_KEYS: Readonly<Record<string, string>> = Object.freeze({
  controlnets: 'ControlNets need @streamdiffusion/controlnet (pass its controlNetConfigFields as wrapperParameters)',
  use_controlnet: 'ControlNets need @streamdiffusion/controlnet (pass its controlNetConfigFields as wrapperParameters)',
  ipadapters: 'IP-Adapters need @streamdiffusion/ip-adapter (pass its ipAdapterConfigFields as wrapperParameters)',
  use_ipadapter: 'IP-Adapters need @streamdiffusion/ip-adapter (pass its ipAdapterConfigFields as wrapperParameters)',
  lora_dict: 'LoRAs need @streamdiffusion/tensorrt (pass its loraConfigFields as wrapperParameters)',
  use_lcm_lora: 'LCM-LoRA is not supported yet; export a model with it merged',
  lcm_lora_id: 'LCM-LoRA is not supported yet; export a model with it merged',
  use_tiny_vae: 'the VAE is the one in the model folder',
  vae_id: 'the VAE is the one in the model folder',
  engine_dir: 'TensorRT engines are not used; the model folder holds ONNX files',
  build_engines_if_missing: 'TensorRT engines are not used',
  compile_engines_only: 'TensorRT engines are not used',
  dtype: 'the precision is the one the model folder was exported in',
  device: 'choose the device with createRuntime({ device })',
  output_type: 'outputs are RGB images or tensors, chosen by the method called',
  use_safety_checker: 'no safety checker is included',
  safety_checker_threshold: 'no safety checker is included',
  // Some forks read top-level prompt_list / seed_list as well; one spelling keeps configs comparable.
  prompt_list: 'write it as prompt_blending: { prompt_list: [...] }',
  seed_list: 'write it as seed_blending: { seed_list: [...] }',
  skip_diffusion: 'skipping diffusion is not supported',
  image_preprocessing: 'processing hooks are not supported yet',
  image_postprocessing: 'processing hooks are not supported yet',
  latent_preprocessing: 'processing hooks are not supported yet',
  latent_postprocessing: 'processing hooks are not supported yet',
  use_cached_attn: 'cached attention is not supported',
  cache_maxframes: 'cached attention is not supported',
  cache_interval: 'cached attention is not supported',
  warmup: 'there is no warm-up pass; the stream is warm after t_index_list length calls',
  enable_pytorch_fallback: 'there is no PyTorch here',
  scheduler: 'the scheduler is LCM, as in the original',
  sampler: 'the scheduler is LCM, as in the original',
});

/**
 * The forks' switches for a wrapper's list (`use_controlnet: false` keeps `controlnets` written but
 * off). Honoured when the wrapper's field is: `false` drops the list (with a warning), `true` is the
 * default.
 */
const WRAPPER_SWITCHES: Readonly<Record<string, string>> = Object.freeze({ use_controlnet: 'controlnets', use_ipadapter: 'ipadapters' });

/** Why a config key was not (fully) honoured. */
export type ConfigWarningKind = 'unknown-key' | 'unsupported-key';

/** A key in a config file that was not (fully) honoured, and where it is. */
export interface ConfigWarning {
  readonly kind: ConfigWarningKind;
  readonly key: string;
  /** 1-based line of the key. */
  readonly line: number | undefined;
  /** `file:line: key: why`, ready to print. */
  readonly message: string;
}

/** What {@link loadConfig} found. */
export interface LoadedConfig {
  /** The config, defaults filled in; wrappers' fields (see `wrapperParameters`) are in it too. */
  readonly config: StreamDiffusionConfig & { readonly [wrapperKey: string]: unknown };
  /** Keys that were ignored or not applied, each with its line. */
  readonly warnings: readonly ConfigWarning[];
  /** The config file, absolute. */
  readonly file: string;
  /** The model folder `model_id` resolved to, absolute. */
  readonly modelFolder: string;
  /** The 1-based line of a key in the file (`['controlnets', 0, 'model_id']`), for messages about it. */
  lineOf(keyPath: readonly PropertyKey[]): number | undefined;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Folder of named models: `model_id` that is not a path is looked up here. */
  readonly modelsDir?: string;
  /** Wrappers' parameter fields the file may hold (their values come back in `config`). */
  readonly wrapperParameters?: WrapperConfigFields;
}

type ConfigFormat = 'yaml' | 'json';

function formatOf(file: string): ConfigFormat {
  const extension = extname(file).toLowerCase();
  if (extension === '.json') return 'json';
  if (extension === '.yaml' || extension === '.yml') return 'yaml';
  throw new ConfigError({ file, message: `expected a .yaml, .yml or .json file, got "${extension || 'no extension'}"` });
}

/**
 * 1-based line of what `path` names: a scalar value's own line (a list entry on its own line), a
 * collection's key line (a block list starts on the line after its key). Undefined when the file
 * lacks the path (a missing key), since any line would point at the wrong place.
 */
function lineOf(document: Document, lines: LineCounter, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = document.contents;
  let line = rangeLine(lines, node);
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) return undefined;
      line = rangeLine(lines, pair.key);
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      node = node.items[segment];
    } else {
      return undefined;
    }
    if (isScalar(node) || line === undefined) line = rangeLine(lines, node) ?? line;
  }
  return line;
}

function rangeLine(lines: LineCounter, node: unknown): number | undefined {
  if (!isNode(node) || node.range === undefined || node.range === null) return undefined;
  return lines.linePos(node.range[0]).line;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}

/** The field's own description, so the error says what the key is for as well as what failed. */
function descriptionOf(schema: z.ZodObject, key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  const field = (schema.shape as Record<string, z.ZodType | undefined>)[key];
  return field?.description;
}

function validationError(options: {
  file: string;
  raw: unknown;
  error: z.ZodError;
  schema: z.ZodObject;
  lineAt: (path: readonly PropertyKey[]) => number | undefined;
}): ConfigError {
  const [first, ...rest] = options.error.issues;
  const path = first?.path ?? [];
  const key = path.length === 0 ? undefined : path.map(String).join('.');
  const description = descriptionOf(options.schema, path[0] === undefined ? undefined : String(path[0]));
  const got = describeValue(valueAt(options.raw, path));
  const message = [
    `${first?.message ?? 'invalid config'} (got ${got})`,
    description === undefined ? '' : `. Expected: ${description}`,
    rest.length === 0 ? '' : `; and ${rest.length} more problem${rest.length === 1 ? '' : 's'}: ${rest.map((issue) => `${issue.path.map(String).join('.')}: ${issue.message}`).join('; ')}`,
  ].join('');
  return new ConfigError({ file: options.file, line: options.lineAt(path), key, message, cause: options.error });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Candidate folders for `model_id`, in the order they are tried. */
function modelCandidates(modelId: string, file: string, modelsDir: string | undefined): string[] {
  const candidates = [isAbsolute(modelId) ? modelId : resolve(dirname(file), modelId)];
  if (modelsDir !== undefined && !isAbsolute(modelId)) {
    candidates.push(resolve(modelsDir, modelId));
    // Hugging Face ids (`stabilityai/sd-turbo`) are stored flat in caches as `stabilityai--sd-turbo`.
    if (modelId.includes('/')) candidates.push(resolve(modelsDir, modelId.replaceAll('/', '--')));
  }
  return [...new Set(candidates)];
}

/**
 * Reads a StreamDiffusion config file (YAML or JSON, by extension) in the Python forks' format,
 * validates it and resolves `model_id` to a local model folder.
 * Unknown keys and keys we do not support yet become warnings naming the key and its line.
 * @throws {ConfigError} naming file, line and key: unreadable or malformed file, a value that
 * fails the schema (with what was expected), or a `model_id` that is no folder (with every path tried).
 */
export async function loadConfig(path: string, options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const file = resolve(path);
  formatOf(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError({ file, message: `cannot read the config file (${(error as Error).message})`, cause: error });
  }
  // The yaml library parses JSON too (JSON is YAML 1.2), which gives JSON files line numbers as well.
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const [syntaxError] = document.errors;
  if (syntaxError !== undefined) {
    throw new ConfigError({ file, line: lines.linePos(syntaxError.pos[0]).line, message: `not valid YAML/JSON: ${syntaxError.message}`, cause: syntaxError });
  }
  const raw: unknown = document.toJS();
  const lineAt = (keyPath: readonly PropertyKey[]): number | undefined => lineOf(document, lines, keyPath);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError({ file, line: lineAt([]), message: `expected a mapping of keys to values at the top level, got ${describeValue(raw)}` });
  }

  const warnings: ConfigWarning[] = [];
  const warn = (kind: ConfigWarningKind, key: string, why: string): void => {
    const line = lineAt([key]);
    warnings.push({ kind, key, line, message: `${line === undefined ? file : `${file}:${line}`}: ${key}: ${why}` });
  };
  const schema = configSchemaWith(options.wrapperParameters);
  const known = schema.shape;
  const honoured: Record<string, unknown> = {};
  const switches: [string, unknown][] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (key in known) {
      honoured[key] = value;
    } else if (Object.hasOwn(WRAPPER_SWITCHES, key) && WRAPPER_SWITCHES[key]! in known) {
      switches.push([key, value]);
    } else if (key in UNSUPPORTED_CONFIG_KEYS) {
      warn('unsupported-key', key, `ignored: ${UNSUPPORTED_CONFIG_KEYS[key]!}`);
    } else {
      warn('unknown-key', key, 'ignored: not a StreamDiffusion config key');
    }
  }
  for (const [key, value] of switches) {
    if (typeof value !== 'boolean') throw new ConfigError({ file, line: lineAt([key]), key, message: `expected true or false, got ${describeValue(value)}` });
    const list = WRAPPER_SWITCHES[key]!;
    if (!value && list in honoured) {
      delete honoured[list];
      warn('unsupported-key', list, `ignored: ${key} is false`);
    }
  }
  // Python writes `prompt_blending: null` for "none"; treat it as absent rather than as a type error.
  for (const key of ['prompt_blending', 'seed_blending']) if (honoured[key] === null) delete honoured[key];

  const parsed = schema.safeParse(honoured);
  if (!parsed.success) throw validationError({ file, raw, error: parsed.error, schema, lineAt });
  const config = parsed.data;
  if (config.acceleration !== 'none') warn('unsupported-key', 'acceleration', `"${config.acceleration}" is not supported here; running without it`);

  const tried = modelCandidates(config.model_id, file, options.modelsDir);
  let modelFolder: string | undefined;
  for (const candidate of tried) {
    if (await isDirectory(candidate)) {
      modelFolder = candidate;
      break;
    }
  }
  if (modelFolder === undefined) {
    const hint = options.modelsDir === undefined && !isAbsolute(config.model_id) ? '; pass { modelsDir } to look names up in a models folder' : '';
    throw new ConfigError({
      file,
      line: lineAt(['model_id']),
      key: 'model_id',
      message: `no model folder for ${JSON.stringify(config.model_id)}: tried ${tried.join(', ')}${hint}`,
    });
  }
  return { config, warnings, file, modelFolder, lineOf: lineAt };
}

/**
 * Where a model a config file names is (a wrapper's `model_id`, as the config's own `model_id` is
 * found): absolute, relative to the config file, or with `modelsDir` a name in that folder
 * (`owner/name` also as `owner--name`). A model folder, or with `file: true` also a file (`.onnx`).
 * @throws {ConfigError} naming the file, the key and its line, with every path tried.
 */
export async function resolveConfigModelPath(
  loaded: Pick<LoadedConfig, 'file' | 'lineOf'>,
  modelId: string,
  options: { readonly keyPath: readonly PropertyKey[]; readonly modelsDir?: string; readonly file?: boolean },
): Promise<string> {
  const tried = modelCandidates(modelId, loaded.file, options.modelsDir);
  for (const candidate of tried) {
    const found = await stat(candidate).catch(() => undefined);
    if (found?.isDirectory() === true || (options.file === true && found?.isFile() === true)) return candidate;
  }
  throw new ConfigError({
    file: loaded.file,
    line: loaded.lineOf(options.keyPath),
    key: options.keyPath.map(String).join('.'),
    message: `no model ${options.file === true ? 'folder or file' : 'folder'} for ${JSON.stringify(modelId)}: tried ${tried.join(', ')}`,
  });
}

/**
 * The pipeline options a validated config stands for, all but `model` (load that from
 * {@link LoadedConfig.modelFolder} with `loadModel`).
 */
export function configToStreamDiffusionOptions(config: StreamDiffusionConfig): Omit<StreamDiffusionOptions, 'model'> {
  return {
    prompt: config.prompt,
    negativePrompt: config.negative_prompt,
    tIndexList: config.t_index_list,
    numInferenceSteps: config.num_inference_steps,
    width: config.width,
    height: config.height,
    frameBufferSize: config.frame_buffer_size,
    cfgType: config.cfg_type,
    guidanceScale: config.guidance_scale,
    delta: config.delta,
    seed: config.seed,
    addNoise: config.do_add_noise,
    useDenoisingBatch: config.use_denoising_batch,
    ...(config.prompt_blending === undefined ? {} : { promptBlending: config.prompt_blending }),
    ...(config.seed_blending === undefined ? {} : { seedBlending: config.seed_blending }),
    normalizePromptWeights: config.normalize_prompt_weights,
    normalizeSeedWeights: config.normalize_seed_weights,
    similarityFilter: config.enable_similar_image_filter
      ? { threshold: config.similar_image_filter_threshold, maxSkipFrames: config.similar_image_filter_max_skip_frame }
      : false,
  };
}

/**
 * Writes a config as YAML or JSON (by extension) that {@link loadConfig} reads back to the same
 * config. Validates first, and writes a temp file renamed into place so a reader never sees half a file.
 * @throws {ConfigError} for an unsupported extension or a config that fails the schema.
 */
export async function saveConfig(
  path: string,
  config: StreamDiffusionConfigInput & Readonly<Record<string, unknown>>,
  options: { readonly wrapperParameters?: WrapperConfigFields } = {},
): Promise<void> {
  const file = resolve(path);
  const format = formatOf(file);
  const schema = configSchemaWith(options.wrapperParameters);
  const parsed = schema.safeParse(config);
  if (!parsed.success) throw validationError({ file, raw: config, error: parsed.error, schema, lineAt: () => undefined });
  const text = format === 'json' ? `${JSON.stringify(parsed.data, null, 2)}\n` : stringify(parsed.data);
  const temporary = join(dirname(file), `.${basename(file)}.${randomUUID()}.tmp`);
  try {
    await writeFile(temporary, text, 'utf8');
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new ConfigError({ file, message: `cannot write the config file (${(error as Error).message})`, cause: error });
  }
}

/**
 * The JSON Schema of the full config file (zod 4's `z.toJSONSchema`), for editors and generated
 * docs; every property carries its `description` and `update` (hot, reload or rebuild).
 */
export function configJsonSchema(options: { readonly wrapperParameters?: WrapperConfigFields } = {}): Record<string, unknown> {
  // Input mode: a file may leave out every key that has a default.
  return z.toJSONSchema(configSchemaWith(options.wrapperParameters), { io: 'input' });
}
