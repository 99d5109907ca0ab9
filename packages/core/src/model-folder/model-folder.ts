import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ModelFolderError } from '../errors/errors.js';

/** The ONNX models of a Stable Diffusion folder, by their diffusers/Optimum subfolder name. */
export const MODEL_COMPONENTS = Object.freeze(['unet', 'vae_encoder', 'vae_decoder', 'text_encoder'] as const);
/** One ONNX component of a model folder. */
export type ModelComponent = (typeof MODEL_COMPONENTS)[number];

/** Beta schedules the LCM scheduler knows how to compute. */
export const BETA_SCHEDULES = Object.freeze(['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const);

/** `scheduler/scheduler_config.json`, as diffusers writes it (unknown keys are kept). */
export const schedulerConfigSchema = z
  .looseObject({
    num_train_timesteps: z.number().int().positive().default(1000).describe('Training timesteps (diffusers: num_train_timesteps).'),
    beta_start: z.number().positive().default(0.00085).describe('First beta of the schedule.'),
    beta_end: z.number().positive().default(0.012).describe('Last beta of the schedule.'),
    beta_schedule: z.string().default('scaled_linear').describe(`How betas go from start to end: ${BETA_SCHEDULES.join(', ')}.`),
    trained_betas: z.array(z.number()).nullish().describe('Explicit betas, overriding the schedule.'),
    prediction_type: z.string().default('epsilon').describe('What the UNet predicts: epsilon, v_prediction or sample.'),
    original_inference_steps: z.number().int().positive().optional().describe('LCM: the step count the model was distilled with.'),
    timestep_spacing: z.string().optional().describe('How inference timesteps are spaced (leading, trailing, linspace).'),
    steps_offset: z.number().int().optional().describe('Offset added to inference timesteps.'),
  })
  .describe('The scheduler config of a model folder.');
/** A parsed scheduler config. */
export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>;

/** The VAE of a folder: KL (AutoencoderKL) or TAESD (AutoencoderTiny), with its latent scaling. */
export interface VaeDescription {
  readonly kind: 'kl' | 'taesd';
  /** Latents are multiplied by this after encoding and divided before decoding. Read from config. */
  readonly scalingFactor: number;
  /** Image pixels per latent pixel along each side (8 for every SD VAE). */
  readonly spatialFactor: number;
}

/** What a model folder holds, read from disk and checked; no model is loaded yet. */
export interface ModelFolder {
  readonly root: string;
  /** `model_index.json` as written. */
  readonly index: Readonly<Record<string, unknown>>;
  /** The `.onnx` file of each component present (`vae_encoder` may be absent: then no img2img). */
  readonly models: Readonly<Partial<Record<ModelComponent, string>>> & { readonly unet: string; readonly vae_decoder: string; readonly text_encoder: string };
  readonly tokenizerFolder: string;
  readonly scheduler: SchedulerConfig;
  readonly vae: VaeDescription;
}

const vaeConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  scaling_factor: z.number().positive().optional(),
  block_out_channels: z.array(z.number()).optional(),
  decoder_block_out_channels: z.array(z.number()).optional(),
});

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readJson(path: string, missing: 'missing-file' | 'missing-tokenizer-file' = 'missing-file'): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ModelFolderError({ problem: missing, path, message: 'a required file is missing', cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: `not valid JSON: ${(error as Error).message}`, cause: error });
  }
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join('.') ?? '';
    throw new ModelFolderError({
      problem: 'bad-config',
      path,
      message: `${where === '' ? 'the file' : `"${where}"`} ${issue?.message ?? 'is invalid'}`,
    });
  }
  return result.data;
}

async function readVae(root: string): Promise<VaeDescription> {
  const path = join(root, 'vae_decoder', 'config.json');
  const config = parseWith(vaeConfigSchema, await readJson(path), path);
  if (config.scaling_factor === undefined) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: '"scaling_factor" is missing; it is never guessed' });
  }
  const blocks = config.block_out_channels ?? config.decoder_block_out_channels ?? [0, 0, 0, 0];
  return {
    kind: config._class_name === 'AutoencoderTiny' ? 'taesd' : 'kl',
    scalingFactor: config.scaling_factor,
    spatialFactor: 2 ** (blocks.length - 1),
  };
}

async function findTokenizer(root: string): Promise<string> {
  const folder = join(root, 'tokenizer');
  if (await isFile(join(folder, 'tokenizer.json'))) return folder;
  for (const file of ['vocab.json', 'merges.txt']) {
    const path = join(folder, file);
    if (!(await isFile(path))) {
      throw new ModelFolderError({
        problem: 'missing-tokenizer-file',
        path,
        message: 'the tokenizer needs vocab.json and merges.txt (or a tokenizer.json)',
      });
    }
  }
  return folder;
}

/**
 * Reads and checks a diffusers/Optimum ONNX model folder: `model_index.json`, `unet/model.onnx`,
 * `vae_encoder/model.onnx` (optional), `vae_decoder/model.onnx`, `text_encoder/model.onnx`,
 * `tokenizer/`, `scheduler/scheduler_config.json`. Throws {@link ModelFolderError} saying what is
 * wrong and where. Loads no model.
 */
export async function readModelFolder(root: string): Promise<ModelFolder> {
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('not a folder');
  } catch (error) {
    throw new ModelFolderError({ problem: 'missing-file', path: root, message: 'the model folder does not exist or is not a folder', cause: error });
  }
  const indexPath = join(root, 'model_index.json');
  const index = parseWith(z.record(z.string(), z.unknown()), await readJson(indexPath), indexPath);
  const models: Partial<Record<ModelComponent, string>> = {};
  for (const component of MODEL_COMPONENTS) {
    const path = join(root, component, 'model.onnx');
    if (await isFile(path)) models[component] = path;
    else if (component !== 'vae_encoder') {
      throw new ModelFolderError({ problem: 'missing-file', path, message: `the ${component} model is missing` });
    }
  }
  const schedulerPath = join(root, 'scheduler', 'scheduler_config.json');
  const scheduler = parseWith(schedulerConfigSchema, await readJson(schedulerPath), schedulerPath);
  if (scheduler.trained_betas == null && !(BETA_SCHEDULES as readonly string[]).includes(scheduler.beta_schedule)) {
    throw new ModelFolderError({
      problem: 'unknown-beta-schedule',
      path: schedulerPath,
      message: `beta_schedule "${scheduler.beta_schedule}" is not one of ${BETA_SCHEDULES.join(', ')}`,
    });
  }
  const [vae, tokenizerFolder] = await Promise.all([readVae(root), findTokenizer(root)]);
  return {
    root,
    index,
    models: models as ModelFolder['models'],
    tokenizerFolder,
    scheduler,
    vae,
  };
}
