/**
 * Engine plans: from a pipeline config and a model folder, which models need TensorRT engines and
 * with which input shape profiles (min/opt/max per input, named as the ONNX files name them).
 *
 * The UNet batch follows core's stream batch (pipeline/stream-batch.ts): with a denoising batch a
 * call carries n·f rows (n = t_index_list length, f = frame_buffer_size), plus f unconditional rows
 * for `initialize` and n·f for `full` while guidance_scale > 1; step by step it carries f rows plus
 * f unconditional rows for `initialize` and `full`. guidance_scale is a hot parameter, so the
 * profile spans the batch with and without those rows. The VAE runs on the f frames of one call.
 */
import { join, resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import {
  detectCapabilities,
  InvalidArgumentError,
  readModelFolder,
  TEXT_TOKENS,
  UNET_INPUTS,
  valueAt,
  type ModelCapabilities,
  type ModelFolder,
  type ModelSignature,
  type StreamDiffusionConfig,
  type TensorType,
  type ValueSignature,
} from '@streamdiffusion/core';
import { z } from 'zod';
import { ONNX_TYPES, readModel, toNumber, type OnnxModelProto, type OnnxValueInfo } from '../onnx/onnx-model.js';

/** Precisions an engine can be built in. */
export const ENGINE_PRECISIONS = Object.freeze(['fp16', 'fp32'] as const);
/** Engine precision: `fp16` lets TensorRT pick fp16 kernels (`--fp16`), `fp32` keeps fp32. */
export type EnginePrecision = (typeof ENGINE_PRECISIONS)[number];

/** Whether an engine accepts a range of image sizes or exactly the config's. */
export const RESOLUTION_MODES = Object.freeze(['dynamic', 'static'] as const);
export type ResolutionMode = (typeof RESOLUTION_MODES)[number];

/** Image sides are multiples of this (VAE ×8, UNet ×8). */
export const RESOLUTION_STEP = 64;

const batchField = (which: string) =>
  z
    .int()
    .min(1)
    .max(1024)
    .optional()
    .describe(`${which} UNet and ControlNet batch of the shape profile (integer 1–1024); default: derived from t_index_list, frame_buffer_size, cfg_type and use_denoising_batch. Changing it means a rebuild.`);

/** Options of an engine plan: everything about the engines that the pipeline config does not say. */
export const enginePlanOptionsSchema = z
  .strictObject({
    resolution: z
      .enum(RESOLUTION_MODES)
      .default('dynamic')
      .describe('dynamic: engines accept every image side from minResolution to maxResolution (steps of 64 pixels, latent /8), tuned for the config’s width×height; static: exactly the config’s width×height (faster to build, a little faster to run). Changing it means a rebuild.'),
    minResolution: z
      .int()
      .min(RESOLUTION_STEP)
      .max(4096)
      .multipleOf(RESOLUTION_STEP)
      .default(256)
      .describe('Smallest image side a dynamic engine accepts, in pixels (multiple of 64, 64–4096). Changing it means a rebuild.'),
    maxResolution: z
      .int()
      .min(RESOLUTION_STEP)
      .max(4096)
      .multipleOf(RESOLUTION_STEP)
      .default(1024)
      .describe('Largest image side a dynamic engine accepts, in pixels (multiple of 64, 64–4096, at least minResolution). Changing it means a rebuild.'),
    precision: z.enum(ENGINE_PRECISIONS).default('fp16').describe('fp16: TensorRT may use fp16 kernels (--fp16); fp32: fp32 only. Changing it means a rebuild.'),
    minBatch: batchField('Smallest'),
    optBatch: batchField('Tuned-for'),
    maxBatch: batchField('Largest'),
  })
  .describe('How engines are built: resolution range, precision and batch overrides.');

/** Plan options as given (defaults not yet filled in). */
export type EnginePlanOptionsInput = z.input<typeof enginePlanOptionsSchema>;
/** Plan options, defaults filled in. */
export type EnginePlanOptions = z.output<typeof enginePlanOptionsSchema>;

/**
 * Validates plan options and fills in defaults.
 * @throws {InvalidArgumentError} naming the field, the value and what was expected.
 */
export function parseEnginePlanOptions(input: unknown = {}): EnginePlanOptions {
  const parsed = enginePlanOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path[0];
    const field = issue.path.length === 0 ? (issue.code === 'unrecognized_keys' ? issue.keys[0] ?? 'options' : 'options') : issue.path.map(String).join('.');
    const description = typeof key === 'string' ? (enginePlanOptionsSchema.shape as Record<string, z.ZodType | undefined>)[key]?.description : undefined;
    const expected = issue.code === 'unrecognized_keys' ? `one of ${Object.keys(enginePlanOptionsSchema.shape).join(', ')}` : `${issue.message}${description === undefined ? '' : ` — ${description}`}`;
    throw new InvalidArgumentError({ field, value: issue.path.length === 0 ? input : valueAt(input, issue.path), expected });
  }
  const options = parsed.data;
  if (options.minResolution > options.maxResolution) {
    throw new InvalidArgumentError({ field: 'minResolution', value: options.minResolution, expected: `at most maxResolution (${options.maxResolution})` });
  }
  return options;
}

/** A batch range of a shape profile. */
export interface BatchRange {
  readonly min: number;
  readonly opt: number;
  readonly max: number;
}

/** The config fields that decide the UNet's batch. */
export type BatchConfig = Pick<StreamDiffusionConfig, 't_index_list' | 'frame_buffer_size' | 'cfg_type' | 'use_denoising_batch' | 'guidance_scale'>;

/** Rows of one UNet call, as core's stream batch builds it (see the file comment). */
export function unetBatchSize(config: BatchConfig, guided: boolean): number {
  const f = config.frame_buffer_size;
  const rows = config.use_denoising_batch ? config.t_index_list.length * f : f;
  if (!guided) return rows;
  switch (config.cfg_type) {
    case 'none':
    case 'self':
      return rows;
    case 'initialize':
      return rows + f;
    case 'full':
      return rows * 2;
    default: {
      const unknown: never = config.cfg_type;
      throw new InvalidArgumentError({ field: 'cfg_type', value: unknown, expected: 'none | self | initialize | full' });
    }
  }
}

/** The UNet batch range: without and with guidance's extra rows, tuned for the config's guidance_scale. */
export function unetBatchRange(config: BatchConfig): BatchRange {
  const min = unetBatchSize(config, false);
  const max = unetBatchSize(config, true);
  return { min, opt: config.guidance_scale > 1 ? max : min, max };
}

/** Models that get engines. */
export const ENGINE_MODEL_KINDS = Object.freeze(['unet', 'vae_encoder', 'vae_decoder', 'controlnet'] as const);
export type EngineModelKind = (typeof ENGINE_MODEL_KINDS)[number];

/** One input's shape profile: the smallest, tuned-for and largest dims. */
export interface InputProfile {
  readonly name: string;
  readonly min: readonly number[];
  readonly opt: readonly number[];
  readonly max: readonly number[];
}

/** An image-size range in pixels. */
export interface ResolutionRange {
  readonly min: { readonly width: number; readonly height: number };
  readonly opt: { readonly width: number; readonly height: number };
  readonly max: { readonly width: number; readonly height: number };
}

/** One engine to build. */
export interface PlannedEngine {
  /** `unet`, `vae_encoder`, `vae_decoder`, `controlnet-0`, … */
  readonly name: string;
  readonly kind: EngineModelKind;
  /** The ONNX file, absolute. */
  readonly onnx: string;
  /** For the UNet: whether it takes ControlNet residuals and IP-Adapter tokens. */
  readonly variant?: { readonly controlNet: boolean; readonly ipAdapter: boolean };
  readonly precision: EnginePrecision;
  readonly batch: BatchRange;
  readonly resolution: ResolutionRange;
  /** Profiles of the inputs with a dynamic dim (inputs fixed in the ONNX file need none). */
  readonly inputs: readonly InputProfile[];
}

/** Which engines a pipeline needs. */
export interface EnginePlan {
  readonly options: EnginePlanOptions;
  readonly modelFolder: string;
  readonly engines: readonly PlannedEngine[];
}

/** What {@link planEngines} needs. */
export interface PlanEnginesInput {
  /** The parsed pipeline config (`streamDiffusionConfigSchema` output, or `loadConfig(...).config`). */
  readonly config: StreamDiffusionConfig;
  /** The model folder (path or as `readModelFolder` read it). */
  readonly model: string | ModelFolder;
  /** The model's capabilities when a runtime already loaded it; else read from the ONNX files. */
  readonly capabilities?: ModelCapabilities;
  /** ControlNets: `.onnx` files or folders holding `model.onnx` (the config's `controlnets[].model_id`, resolved). */
  readonly controlnets?: readonly string[];
  /** IP-Adapter image tokens (4 regular, 16 plus); when unknown the profile spans 4–16. */
  readonly ipAdapterImageTokens?: number;
  readonly options?: EnginePlanOptionsInput;
}

/** The image tokens of an IP-Adapter type (the config's `ipadapters[].type`): regular 4, plus 16, else unknown. */
export const ipAdapterImageTokensOf = (type: string | undefined): number | undefined => (type === 'regular' ? 4 : type === 'plus' ? 16 : undefined);

const ELEMENT_TYPES = new Map<number, TensorType>([
  [ONNX_TYPES.float, 'float32'],
  [ONNX_TYPES.float16, 'float16'],
  [ONNX_TYPES.int32, 'int32'],
  [ONNX_TYPES.int64, 'int64'],
  [ONNX_TYPES.uint8, 'uint8'],
  [ONNX_TYPES.bool, 'bool'],
]);

/** A dim as a number when fixed, its dim_param (or `?`) when symbolic. */
function dimsOf(value: OnnxValueInfo): (number | string)[] {
  return (value.type?.tensorType?.shape?.dim ?? []).map((dim) => (dim.dimValue !== undefined && toNumber(dim.dimValue) > 0 ? toNumber(dim.dimValue) : dim.dimParam || '?'));
}

/** A model's declared inputs and outputs, read from its ONNX file (no runtime needed). */
export function onnxSignature(model: OnnxModelProto): ModelSignature {
  const initializers = new Set((model.graph?.initializer ?? []).map((tensor) => tensor.name));
  const value = (info: OnnxValueInfo): ValueSignature => ({ name: info.name ?? '', type: ELEMENT_TYPES.get(info.type?.tensorType?.elemType ?? 0) ?? 'other', shape: dimsOf(info) });
  return {
    // Old exporters list initializers as graph inputs too; they are not fed.
    inputs: (model.graph?.input ?? []).filter((input) => !initializers.has(input.name)).map(value),
    outputs: (model.graph?.output ?? []).map(value),
  };
}

/** Down-block residual i of an SD1.5/2.1 UNet is at latent size / this (DESIGN §3). */
const RESIDUAL_FACTORS = [1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8] as const;

/** Sizes at one profile point. */
interface ProfilePoint {
  readonly batch: number;
  readonly frames: number;
  readonly width: number;
  readonly height: number;
  readonly tokens: number;
}

/** Per dim: a size this point gives, or null where the ONNX file must fix it (channels, widths). */
type DimTemplate = (point: ProfilePoint, latent: (pixels: number) => number) => (number | null)[];

function templateFor(kind: EngineModelKind, name: string, rank: number): DimTemplate | undefined {
  const latentHW = (p: ProfilePoint, latent: (pixels: number) => number, factor = 1) => [Math.ceil(latent(p.height) / factor), Math.ceil(latent(p.width) / factor)];
  if (kind === 'vae_encoder' && name === 'sample') return (p) => [p.frames, null, p.height, p.width];
  if (kind === 'vae_decoder' && name === 'latent_sample') return (p, latent) => [p.frames, null, ...latentHW(p, latent)];
  if (kind !== 'unet' && kind !== 'controlnet') return undefined;
  if (name === UNET_INPUTS.sample) return (p, latent) => [p.batch, null, ...latentHW(p, latent)];
  if (name === UNET_INPUTS.timestep) return (p) => (rank === 0 ? [] : [p.batch]);
  // A ControlNet sees the 77 text tokens only; the UNet also an IP-Adapter's image tokens.
  if (name === UNET_INPUTS.encoderHiddenStates) return (p) => [p.batch, kind === 'unet' ? p.tokens : TEXT_TOKENS, null];
  if (kind === 'controlnet' && name === 'controlnet_cond') return (p) => [p.batch, null, p.height, p.width];
  if (kind !== 'unet') return undefined;
  if (name === UNET_INPUTS.ipAdapterScale) return (p) => [p.batch, null];
  if (name === UNET_INPUTS.midBlockResidual) return (p, latent) => [p.batch, null, ...latentHW(p, latent, 8)];
  if (name.startsWith(UNET_INPUTS.downBlockResidualPrefix)) {
    const factor = RESIDUAL_FACTORS[Number(name.slice(UNET_INPUTS.downBlockResidualPrefix.length))];
    if (factor === undefined) return undefined;
    return (p, latent) => [p.batch, null, ...latentHW(p, latent, factor)];
  }
  return undefined;
}

/** The input's dims at one point: the template's sizes where it gives them, the ONNX file's fixed dims elsewhere. */
function dimsAt(engine: string, path: string, input: ValueSignature, template: DimTemplate | undefined, point: ProfilePoint, latent: (pixels: number) => number): number[] {
  const wanted = template?.(point, latent);
  if (wanted !== undefined && wanted.length !== input.shape.length) {
    throw new InvalidArgumentError({ field: `${engine}.${input.name}`, value: input.shape, expected: `rank ${wanted.length} (${path})` });
  }
  return input.shape.map((declared, index) => {
    const size = wanted?.[index] ?? null;
    if (typeof declared === 'number') {
      if (size !== null && size !== declared) {
        throw new InvalidArgumentError({
          field: `${engine}.${input.name}[${index}]`,
          value: size,
          expected: `${declared}: ${path} fixes this dim; plan a profile it can take (a static resolution, or a batch override that matches)`,
        });
      }
      return declared;
    }
    if (size === null) {
      throw new InvalidArgumentError({ field: `${engine}.${input.name}[${index}]`, value: declared, expected: `a dim this plan can size (${path}: no rule for input "${input.name}" dim ${index})` });
    }
    return size;
  });
}

function profilesOf(options: {
  readonly engine: string;
  readonly kind: EngineModelKind;
  readonly path: string;
  readonly signature: ModelSignature;
  readonly points: { readonly min: ProfilePoint; readonly opt: ProfilePoint; readonly max: ProfilePoint };
  readonly spatialFactor: number;
}): InputProfile[] {
  const latent = (pixels: number): number => pixels / options.spatialFactor;
  return options.signature.inputs
    .filter((input) => input.shape.some((dim) => typeof dim === 'string'))
    .map((input) => {
      const template = templateFor(options.kind, input.name, input.shape.length);
      const at = (point: ProfilePoint) => dimsAt(options.engine, options.path, input, template, point, latent);
      return { name: input.name, min: at(options.points.min), opt: at(options.points.opt), max: at(options.points.max) };
    });
}

async function controlNetFile(path: string): Promise<string> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch(() => undefined);
  if (info === undefined) throw new InvalidArgumentError({ field: 'controlnets', value: path, expected: 'an .onnx file or a folder holding model.onnx' });
  return info.isDirectory() ? join(absolute, 'model.onnx') : absolute;
}

/**
 * The engines a pipeline config needs, with a shape profile per dynamic input read from the ONNX
 * files: the UNet (its ControlNet / IP-Adapter variant is what its file takes), the VAE encoder
 * (img2img), the VAE decoder and each ControlNet.
 * @throws {InvalidArgumentError} for bad options, a config size outside the resolution range, or a
 * profile an ONNX file's fixed dims cannot take (naming the input and dim).
 */
export async function planEngines(input: PlanEnginesInput): Promise<EnginePlan> {
  const options = parseEnginePlanOptions(input.options);
  const { config } = input;
  const folder = typeof input.model === 'string' ? await readModelFolder(input.model) : input.model;
  const models = new Map<string, OnnxModelProto>();
  const modelAt = async (path: string): Promise<OnnxModelProto> => {
    let model = models.get(path);
    if (model === undefined) {
      model = await readModel(path);
      models.set(path, model);
    }
    return model;
  };
  const signatureAt = async (path: string): Promise<ModelSignature> => onnxSignature(await modelAt(path));
  const capabilities =
    input.capabilities ??
    detectCapabilities(
      {
        unet: await signatureAt(folder.models.unet),
        vae_decoder: await signatureAt(folder.models.vae_decoder),
        text_encoder: await signatureAt(folder.models.text_encoder),
        ...(folder.models.vae_encoder === undefined ? {} : { vae_encoder: await signatureAt(folder.models.vae_encoder) }),
      },
      folder.models,
      folder.vae,
    );

  const multiple = capabilities.vae.spatialFactor * 8;
  for (const [field, value] of [['width', config.width], ['height', config.height]] as const) {
    if (value % multiple !== 0) throw new InvalidArgumentError({ field, value, expected: `a multiple of ${multiple} (VAE ×${capabilities.vae.spatialFactor}, UNet ×8)` });
    if (options.resolution === 'dynamic' && (value < options.minResolution || value > options.maxResolution)) {
      throw new InvalidArgumentError({ field, value, expected: `${options.minResolution}–${options.maxResolution} (the dynamic resolution range; widen it or plan a static engine)` });
    }
  }
  const resolution: ResolutionRange =
    options.resolution === 'static'
      ? { min: { width: config.width, height: config.height }, opt: { width: config.width, height: config.height }, max: { width: config.width, height: config.height } }
      : {
          min: { width: options.minResolution, height: options.minResolution },
          opt: { width: config.width, height: config.height },
          max: { width: options.maxResolution, height: options.maxResolution },
        };

  const derived = unetBatchRange(config);
  const batch: BatchRange = { min: options.minBatch ?? derived.min, opt: options.optBatch ?? derived.opt, max: options.maxBatch ?? derived.max };
  // Blame an override over a derived value: the override is what the user can change.
  const misordered: 'minBatch' | 'optBatch' | 'maxBatch' | undefined =
    batch.min > batch.opt ? (options.minBatch !== undefined ? 'minBatch' : 'optBatch') : batch.opt > batch.max ? (options.maxBatch !== undefined ? 'maxBatch' : 'optBatch') : undefined;
  if (misordered !== undefined) {
    const value = { minBatch: batch.min, optBatch: batch.opt, maxBatch: batch.max }[misordered];
    throw new InvalidArgumentError({ field: misordered, value, expected: `minBatch ≤ optBatch ≤ maxBatch (the plan has ${batch.min} ≤ ${batch.opt} ≤ ${batch.max})` });
  }
  const frames = config.frame_buffer_size;
  const fixedTokens = capabilities.ipAdapter?.imageTokens ?? null;
  const imageTokens = input.ipAdapterImageTokens ?? fixedTokens;
  const tokens =
    capabilities.ipAdapter === null
      ? { min: TEXT_TOKENS, opt: TEXT_TOKENS, max: TEXT_TOKENS }
      : imageTokens !== null
        ? { min: TEXT_TOKENS + imageTokens, opt: TEXT_TOKENS + imageTokens, max: TEXT_TOKENS + imageTokens }
        : { min: TEXT_TOKENS + 4, opt: TEXT_TOKENS + 4, max: TEXT_TOKENS + 16 };
  const points = {
    min: { batch: batch.min, frames, ...resolution.min, tokens: tokens.min },
    opt: { batch: batch.opt, frames, ...resolution.opt, tokens: tokens.opt },
    max: { batch: batch.max, frames, ...resolution.max, tokens: tokens.max },
  };
  const spatialFactor = capabilities.vae.spatialFactor;
  const planned = async (name: string, kind: EngineModelKind, path: string, extra: Partial<PlannedEngine> = {}): Promise<PlannedEngine> => {
    const vae = kind === 'vae_encoder' || kind === 'vae_decoder';
    return {
      name,
      kind,
      onnx: path,
      ...extra,
      precision: options.precision,
      batch: vae ? { min: frames, opt: frames, max: frames } : batch,
      resolution,
      inputs: profilesOf({ engine: name, kind, path, signature: await signatureAt(path), points, spatialFactor }),
    };
  };

  const engines: PlannedEngine[] = [await planned('unet', 'unet', folder.models.unet, { variant: { controlNet: capabilities.controlNet !== null, ipAdapter: capabilities.ipAdapter !== null } })];
  if (config.mode === 'img2img' && folder.models.vae_encoder !== undefined) engines.push(await planned('vae_encoder', 'vae_encoder', folder.models.vae_encoder));
  engines.push(await planned('vae_decoder', 'vae_decoder', folder.models.vae_decoder));
  const controlnets = input.controlnets ?? [];
  if (controlnets.length > 0 && capabilities.controlNet === null) {
    throw new InvalidArgumentError({ field: 'controlnets', value: controlnets, expected: `none: the UNet (${folder.models.unet}) takes no ControlNet residual inputs` });
  }
  for (const [index, path] of controlnets.entries()) engines.push(await planned(`controlnet-${index}`, 'controlnet', await controlNetFile(path)));
  return { options, modelFolder: folder.root, engines };
}
