/**
 * The StreamDiffusion pipeline over a loaded model folder: prompt embeddings computed once, seeded
 * noise, the LCM constants, the stream batch, the similarity filter, and images in and out.
 * Runs models through the runtime's worker; the stream-batch math runs on host float32 arrays.
 */
import { createRecentCache } from '../cache/recent-cache.js';
import { DisposedError, InvalidArgumentError } from '../errors/errors.js';
import { imageToTensor, tensorToImage, type ImageSource, type RgbImage } from '../image/image.js';
import type { LoadedModel } from '../model-folder/load-model.js';
import { createTorchGenerator, type TorchGenerator } from '../noise/torch-generator.js';
import { TEXT_TOKENS } from '../model-folder/unet-inputs.js';
import { hostTensor, type HostTensor } from '../runtime/host-tensor.js';
import { createLcmSchedule } from '../scheduler/lcm-schedule.js';
import { createSimilarityFilter, type SimilarityFilter, type SimilarityFilterOptions } from '../stream/similarity-filter.js';
import { hotParametersShape, reloadParametersShape, streamParametersShape, withoutDefaults } from '../config/stream-parameters.js';
import { expectedOf, valueAt } from '../config/zod-issues.js';
import { z } from 'zod';
import { blendEmbeddings, blendNoise, blendWeights } from './blending.js';
import { addInputNoise, CFG_TYPES, createSequentialBatch, createStreamBatch, type CfgType, type StepConstants, type StreamBatch, type UnetRequest } from './stream-batch.js';
import { checkWrappers, checkWrapperState, frameImages, hiddenStatesMemo, prepareFrames, prepareWrapperUpdates, releaseFrames, wrapperContributions, wrapperParameterShape } from '../wrappers/compose-wrappers.js';
import type { AnyUNetWrapperV1, WrapperFrameV1, WrappersParameters, WrappersParametersInput } from '../wrappers/unet-wrapper-v1.js';

/** Options of {@link createStreamDiffusion}; defaults are the Python original's. */
export interface StreamDiffusionOptions<Wrappers extends readonly AnyUNetWrapperV1[] = readonly AnyUNetWrapperV1[]> {
  readonly model: LoadedModel;
  /**
   * Features that change the UNet call (ControlNet, IP-Adapter, …), applied in this order. The
   * pipeline owns them from here on: its `dispose()` disposes them.
   */
  readonly wrappers?: Wrappers;
  readonly prompt: string;
  /** Used by cfg `initialize` and `full` with guidance > 1. Default "". */
  readonly negativePrompt?: string;
  /** Indices into the `numInferenceSteps`-step LCM schedule, noisiest first. Default [32, 45]. */
  readonly tIndexList?: readonly number[];
  /** Length of the LCM schedule the indices point into. Default 50. */
  readonly numInferenceSteps?: number;
  /** Output size in pixels, any multiples of 64 (not only 512). Default 512 × 512. */
  readonly width?: number;
  readonly height?: number;
  /** f: frames per call. Default 1. */
  readonly frameBufferSize?: number;
  /** Default `self`. */
  readonly cfgType?: CfgType;
  /** γ; guidance is active only above 1. Default 1.2. */
  readonly guidanceScale?: number;
  /** δ. Default 1. */
  readonly delta?: number;
  /** Seed of the noise (`torch.Generator().manual_seed(seed)`, reproduced bit for bit). Default 2. */
  readonly seed?: number;
  /** Re-noise the buffer between steps. Default true. */
  readonly addNoise?: boolean;
  /**
   * Denoise all steps of all frames in one UNet call (true, the default: StreamDiffusion's stream
   * batch), or run the steps one call after another per frame (false: no warm-up, n calls per frame).
   */
  readonly useDenoisingBatch?: boolean;
  /** Weighted prompts instead of `prompt` (the config's `prompt_blending` forms). */
  readonly promptBlending?: HotParameters['prompt_blending'];
  /** Weighted seeds instead of `seed` (the config's `seed_blending` forms). */
  readonly seedBlending?: HotParameters['seed_blending'];
  /** Divide blending weights by their sum. Default true. */
  readonly normalizePromptWeights?: boolean;
  readonly normalizeSeedWeights?: boolean;
  /** Skip near-identical input frames (img2img only); off by default. */
  readonly similarityFilter?: SimilarityFilterOptions | false;
}

/** One call's result: f output images, and whether the stream was past warm-up. */
export interface StreamDiffusionResult {
  readonly images: RgbImage[];
  /**
   * False for the first n − 1 calls (n = t_index_list length; (n − 1)·f frames): their outputs have
   * not been through every step yet (the buffer started empty), exactly as in the Python original.
   * A call returns the frames it was given n − 1 calls earlier.
   */
  readonly warm: boolean;
  /** True when the similarity filter skipped this input and the previous output was returned. */
  readonly skipped: boolean;
  /** Where the call's time went. */
  readonly timings: FrameTimings;
}

/**
 * Where one call's time went, in milliseconds of host clock. Model stages include moving their
 * inputs and outputs; on a GPU a stage also waits for GPU work queued before it.
 */
export interface FrameTimings {
  /** Images to the input tensor: decoding, resizing, normalising (img2img with images only). */
  readonly preprocess: number;
  /** The VAE encoder. */
  readonly encode: number;
  /** The UNet runs, with what the wrappers add to them. */
  readonly unet: number;
  /** The stream-batch math around the UNet: input noise, CFG, the LCM step, the buffer refill. */
  readonly scheduler: number;
  /** The VAE decoder; for image results this includes turning its output into uint8 pixels on the device. */
  readonly decode: number;
  /** Host work on the output after decoding (pixels come back converted: only split into frames). */
  readonly postprocess: number;
  /** The whole call. */
  readonly total: number;
}

/** Images for the wrappers that take some with every frame (a ControlNet's control image), by name. */
export interface FrameImagesOption<Image> {
  /** Each `[f frames]` (one image when f = 1); a wrapper falls back to the input frame where it says so. */
  readonly images?: Readonly<Record<string, Image>>;
}

/**
 * A running StreamDiffusion pipeline; `Extra` is its wrappers' parameters, `ExtraInput` what
 * `update` accepts for them (defaults may be left out).
 */
export interface StreamDiffusion<Extra extends object = object, ExtraInput extends object = Extra> {
  /** f = frameBufferSize input frames (any size, RGB/RGBA, files or buffers) → f output images. */
  img2img(frames: ImageSource | readonly ImageSource[], options?: FrameImagesOption<ImageSource | readonly ImageSource[]>): Promise<StreamDiffusionResult>;
  /**
   * The same on `[f, 3, height, width]` tensors in [-1, 1] → decoded tensors in [-1, 1], with the
   * denoised latents x̂0 `[f, 4, h, w]` that were decoded (scaled, as the UNet sees them).
   */
  img2imgTensor(
    images: Float32Array,
    options?: FrameImagesOption<Float32Array>,
  ): Promise<{ readonly images: Float32Array; readonly latents: Float32Array; readonly warm: boolean; readonly skipped: boolean; readonly timings: FrameTimings }>;
  /**
   * Text to image: the stream batch run from pure noise. The noise comes from its own generator,
   * seeded with `seed` (as `torch.randn` after `torch.manual_seed(seed)` in the original).
   */
  txt2img(options?: FrameImagesOption<ImageSource | readonly ImageSource[]>): Promise<StreamDiffusionResult>;
  /** `[f, 3, height, width]` decoded tensors of txt2img, with the x̂0 latents decoded. */
  txt2imgTensor(
    options?: FrameImagesOption<Float32Array>,
  ): Promise<{ readonly images: Float32Array; readonly latents: Float32Array; readonly warm: boolean; readonly timings: FrameTimings }>;
  /**
   * One-step text to image for SD-Turbo (the original's `txt2img_sd_turbo`): x̂0 = (x − β·ε)/α from
   * noise in a single UNet call, no stream state. Needs a t_index_list of length 1.
   */
  txt2imgOneStepTensor(options?: FrameImagesOption<Float32Array>): Promise<{ readonly images: Float32Array; readonly latents: Float32Array }>;
  /** The parameters in force (snake_case, as config files write them), wrappers' included; feeds back into `update`. */
  getState(): HotParameters & ReloadParameters & Extra;
  /**
   * Changes hot parameters while the stream runs. Validated first (a bad value raises
   * `InvalidArgumentError` naming the key, and nothing changes); prepared beside the running frames
   * (models load, prompts encode while frames go on), then applied whole between two frames, never
   * during one (frames called meanwhile use the old values); only what changed is recomputed (a new prompt is encoded, a new seed redraws
   * the noise, a t_index_list of the same length keeps the stream's buffer, a new length restarts
   * it). Resolves with the hot keys whose value changed (`applied`) and the reload keys (width,
   * cfg_type, …) whose new value needs a new pipeline (`needsReload`; not applied).
   */
  update(partial: Partial<HotParameters & ReloadParameters> & Partial<ExtraInput>): Promise<{
    readonly applied: readonly (keyof HotParameters | keyof Extra)[];
    readonly needsReload: readonly (keyof ReloadParameters | keyof Extra)[];
  }>;
  /**
   * What `update` accepts, as one zod schema: the pipeline's hot and reload fields and every
   * wrapper's, each optional, with its description and `update` meta (for CLIs, UIs and docs).
   */
  readonly parametersSchema: z.ZodType<Partial<HotParameters & ReloadParameters & Extra>>;
  /** The wrappers, in the order they apply. */
  readonly wrappers: readonly AnyUNetWrapperV1[];
  readonly width: number;
  readonly height: number;
  readonly frameBufferSize: number;
  /**
   * Waits for the running frame, then disposes the wrappers (last first). The model stays loaded:
   * it is the caller's. Any later call raises `DisposedError`.
   */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Accumulates one call's stage times; the UNet's share is taken out of the scheduler stage it runs in. */
interface StageClock {
  unet: number;
  time<T>(stage: 'encode' | 'scheduler' | 'decode', task: () => Promise<T>): Promise<T>;
  timings(): FrameTimings;
}

function startClock(): StageClock {
  const started = performance.now();
  const spent = { encode: 0, scheduler: 0, decode: 0 };
  const clock: StageClock = {
    unet: 0,
    async time(stage, task) {
      const from = performance.now();
      try {
        return await task();
      } finally {
        spent[stage] += performance.now() - from;
      }
    },
    timings: () => ({
      preprocess: 0,
      encode: spent.encode,
      unet: clock.unet,
      scheduler: Math.max(0, spent.scheduler - clock.unet),
      decode: spent.decode,
      postprocess: 0,
      total: performance.now() - started,
    }),
  };
  return clock;
}

/** Every parameter's default, read from the parameter schema (the one place defaults are written). */
const DEFAULTS = z.object(streamParametersShape).parse({});
/** Distinct prompts whose embeddings a pipeline keeps (the most recently used). */
const PROMPT_CACHE_SIZE = 32;

/** The parameters `update` changes while a stream runs: the `hot` fields of the parameter schema. */
const hotParametersSchema = z.object(withoutDefaults(hotParametersShape)).partial();

/** The hot parameters; blending lists are absent when not in use. */
export type HotParameters = Required<Omit<z.output<typeof hotParametersSchema>, 'prompt_blending' | 'seed_blending'>> &
  Pick<z.output<typeof hotParametersSchema>, 'prompt_blending' | 'seed_blending'>;

/** A blending setting in its list form with its method. */
function blendingList<T>(
  setting: readonly (readonly [T, number])[] | { readonly interpolation_method: 'linear' | 'slerp' } | undefined,
  listKey: 'prompt_list' | 'seed_list',
  fallbackMethod: 'linear' | 'slerp',
): { readonly items: readonly (readonly [T, number])[]; readonly method: 'linear' | 'slerp' } | undefined {
  if (setting === undefined) return undefined;
  if (Array.isArray(setting)) return { items: setting as readonly (readonly [T, number])[], method: fallbackMethod };
  const object = setting as Record<string, unknown> & { interpolation_method: 'linear' | 'slerp' };
  return { items: object[listKey] as readonly (readonly [T, number])[], method: object.interpolation_method };
}

/** Parameters fixed for a pipeline's life: the `reload` fields of the parameter schema. */
const reloadParametersSchema = z.object(withoutDefaults(reloadParametersShape)).partial();

/** The reload parameters, all present. */
export type ReloadParameters = Required<z.output<typeof reloadParametersSchema>>;

/** What `update` accepts: any hot or reload parameter or a wrapper's, and nothing else. */
function updateSchemaWith(wrapperShape: Record<string, z.ZodType>) {
  return hotParametersSchema.extend(reloadParametersSchema.shape).extend(z.object(withoutDefaults(wrapperShape)).partial().shape).strict();
}

function filterOptions(parameters: HotParameters): { threshold: number; maxSkipFrames: number } | undefined {
  return parameters.enable_similar_image_filter
    ? { threshold: parameters.similar_image_filter_threshold, maxSkipFrames: parameters.similar_image_filter_max_skip_frame }
    : undefined;
}

/**
 * Prepares a pipeline: schedule constants, seeded noise and prompt embeddings, each once; checks the
 * wrappers against the model (before loading anything) and attaches them in order.
 */
export async function createStreamDiffusion<const Wrappers extends readonly AnyUNetWrapperV1[] = []>(
  options: StreamDiffusionOptions<Wrappers>,
): Promise<StreamDiffusion<WrappersParameters<Wrappers>, WrappersParametersInput<Wrappers>>> {
  const { model } = options;
  const { capabilities } = model;
  const wrappers: readonly AnyUNetWrapperV1[] = options.wrappers ?? [];
  checkWrappers(wrappers, { pipelineKeys: Object.keys(streamParametersShape), unet: model.sessions.signatures.unet, unetPath: model.folder.models.unet });
  wrappers.forEach(checkWrapperState);
  const updateSchema = updateSchemaWith(wrapperParameterShape(wrappers));
  const width = options.width ?? DEFAULTS.width;
  const height = options.height ?? DEFAULTS.height;
  const factor = capabilities.vae.spatialFactor;
  // The VAE divides by 8 and the UNet's three downsamplings by 8 more: latents must split evenly.
  const multiple = factor * 8;
  for (const [field, value] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new InvalidArgumentError({ field, value, expected: `a positive multiple of ${multiple} (VAE ×${factor}, UNet ×8)` });
    }
  }
  const cfgType = options.cfgType ?? DEFAULTS.cfg_type;
  if (!(CFG_TYPES as readonly string[]).includes(cfgType)) {
    throw new InvalidArgumentError({ field: 'cfg_type', value: cfgType, expected: CFG_TYPES.join(' | ') });
  }
  const f = options.frameBufferSize ?? DEFAULTS.frame_buffer_size;
  const guidanceScale = options.guidanceScale ?? DEFAULTS.guidance_scale;
  const latentHeight = height / factor;
  const latentWidth = width / factor;
  const channels = capabilities.latentChannels;
  const slotSize = channels * latentHeight * latentWidth;
  const scaling = capabilities.vae.scalingFactor;

  const schedule = createLcmSchedule(model.folder.scheduler);
  const useDenoisingBatch = options.useDenoisingBatch ?? DEFAULTS.use_denoising_batch;
  const addNoise = options.addNoise ?? DEFAULTS.do_add_noise;
  const latentShape = [f, channels, latentHeight, latentWidth];
  const reloadParameters: ReloadParameters = { width, height, frame_buffer_size: f, cfg_type: cfgType, do_add_noise: addNoise, use_denoising_batch: useDenoisingBatch };

  // Prompt embeddings, computed once per distinct prompt (an update re-encodes only a new prompt),
  // the PROMPT_CACHE_SIZE most recently used kept (a live session cycling through prompts would
  // otherwise keep every one it ever saw: 315 KB each at SD-Turbo's width).
  const embeddings = createRecentCache<Float32Array>(PROMPT_CACHE_SIZE);
  const embed = (prompt: string): Promise<Float32Array> =>
    embeddings.get(prompt, async () => {
      const tensor = await model.prompts.encode(prompt);
      const read = await tensor.float32();
      await tensor.dispose();
      return read;
    });

  /** The text embeddings `parameters` ask for: the (blended) prompt, and the negative prompt where guidance uses it. */
  interface PromptEmbeddings {
    readonly conditional: Float32Array;
    readonly unconditional: Float32Array;
  }
  const promptEmbeddings = async (parameters: HotParameters): Promise<PromptEmbeddings> => {
    const prompts = blendingList(parameters.prompt_blending, 'prompt_list', 'slerp');
    // The negative prompt only for guided initialize / full.
    const guided = parameters.guidance_scale > 1 && (cfgType === 'initialize' || cfgType === 'full');
    const [encoded, negative] = await Promise.all([
      Promise.all((prompts === undefined ? [parameters.prompt] : prompts.items.map(([prompt]) => prompt)).map(embed)),
      guided ? embed(parameters.negative_prompt) : undefined,
    ]);
    const conditional =
      prompts === undefined
        ? encoded[0]!
        : blendEmbeddings(
            encoded,
            blendWeights(prompts.items.map(([, weight]) => weight), { field: 'prompt_blending', normalize: parameters.normalize_prompt_weights }),
            prompts.method,
          );
    return { conditional, unconditional: negative ?? conditional };
  };

  /**
   * Everything a frame reads, built whole and swapped in one assignment between frames, so a frame
   * sees the parameters entirely before or entirely after an update.
   */
  interface FrameState {
    readonly parameters: HotParameters;
    readonly constants: StepConstants;
    readonly initNoise: Float32Array;
    readonly batch: StreamBatch;
    readonly encoderHiddenStates: (rows: readonly boolean[]) => Float32Array;
    readonly filter: SimilarityFilter | undefined;
    readonly textGenerator: TorchGenerator;
    readonly stepGenerator: TorchGenerator;
  }

  /** `embedded`: the prompts' embeddings when the caller computed them ahead (an update, beside the frames). */
  const buildState = async (parameters: HotParameters, previous?: FrameState, embedded?: PromptEmbeddings): Promise<FrameState> => {
    const constants = schedule.streamConstants({ numInferenceSteps: parameters.num_inference_steps, tIndexList: parameters.t_index_list });
    const n = constants.timesteps.length;
    const noiseKey = (p: HotParameters) => JSON.stringify([p.seed, p.seed_blending, p.normalize_seed_weights]);
    const sameSeed = previous !== undefined && noiseKey(previous.parameters) === noiseKey(parameters);
    const sameLength = previous !== undefined && previous.constants.timesteps.length === n;
    // The original draws n·f noise slots with a denoising batch, f without.
    const noiseShape = [useDenoisingBatch ? n * f : f, channels, latentHeight, latentWidth];
    const seeds = blendingList(parameters.seed_blending, 'seed_list', 'linear');
    const initNoise =
      sameSeed && sameLength
        ? previous.initNoise
        : seeds === undefined
          ? createTorchGenerator(parameters.seed).randn(noiseShape)
          : blendNoise(
              seeds.items.map(([seed]) => createTorchGenerator(seed).randn(noiseShape)),
              blendWeights(seeds.items.map(([, weight]) => weight), { field: 'seed_blending', normalize: parameters.normalize_seed_weights }),
            );
    const { conditional, unconditional } = embedded ?? (await promptEmbeddings(parameters));
    const rowSize = conditional.length;
    const hiddenStates = new Map<string, Float32Array>();
    const encoderHiddenStates = (rows: readonly boolean[]): Float32Array => {
      const key = rows.map((row) => (row ? 'u' : 'c')).join('');
      let states = hiddenStates.get(key);
      if (states === undefined) {
        states = new Float32Array(rows.length * rowSize);
        rows.forEach((row, index) => states!.set(row ? unconditional : conditional, index * rowSize));
        hiddenStates.set(key, states);
      }
      return states;
    };
    const settings = { constants, frameBufferSize: f, slotSize, cfgType, guidanceScale: parameters.guidance_scale, delta: parameters.delta, addNoise, initNoise };
    // Same length: keep the stream's buffer and stock noise; a new length starts a new buffer (warm-up again).
    const carried = sameLength ? previous.batch.carry() : undefined;
    // Noise between steps without a denoising batch: the original's torch.randn_like after torch.manual_seed(seed).
    const stepGenerator = sameSeed ? previous.stepGenerator : createTorchGenerator(parameters.seed);
    const batch = useDenoisingBatch
      ? createStreamBatch(settings, carried)
      : createSequentialBatch({ ...settings, stepNoise: () => stepGenerator.randn(latentShape) }, carried);
    const sameFilter = previous !== undefined && JSON.stringify(filterOptions(previous.parameters)) === JSON.stringify(filterOptions(parameters));
    const filterSettings = filterOptions(parameters);
    const filter = sameFilter ? previous.filter : filterSettings === undefined ? undefined : createSimilarityFilter({ ...filterSettings, ...(randomSource === undefined ? {} : { random: randomSource }) });
    const textGenerator = sameSeed ? previous.textGenerator : createTorchGenerator(parameters.seed);
    return { parameters, constants, initNoise, batch, encoderHiddenStates, filter, textGenerator, stepGenerator };
  };

  const randomSource = options.similarityFilter ? options.similarityFilter.random : undefined;
  const buildInitialState = (): Promise<FrameState> =>
    buildState({
      prompt: options.prompt,
      negative_prompt: options.negativePrompt ?? DEFAULTS.negative_prompt,
      t_index_list: [...(options.tIndexList ?? DEFAULTS.t_index_list)],
      num_inference_steps: options.numInferenceSteps ?? DEFAULTS.num_inference_steps,
      guidance_scale: guidanceScale,
      delta: options.delta ?? DEFAULTS.delta,
      seed: options.seed ?? DEFAULTS.seed,
      enable_similar_image_filter: Boolean(options.similarityFilter),
      similar_image_filter_threshold: (options.similarityFilter ? options.similarityFilter.threshold : undefined) ?? DEFAULTS.similar_image_filter_threshold,
      similar_image_filter_max_skip_frame: (options.similarityFilter ? options.similarityFilter.maxSkipFrames : undefined) ?? DEFAULTS.similar_image_filter_max_skip_frame,
      prompt_blending: options.promptBlending,
      seed_blending: options.seedBlending,
      normalize_prompt_weights: options.normalizePromptWeights ?? DEFAULTS.normalize_prompt_weights,
      normalize_seed_weights: options.normalizeSeedWeights ?? DEFAULTS.normalize_seed_weights,
    });
  // Wrappers load their models in order; when anything fails before the pipeline exists, those
  // attached so far are released again (last first).
  const release = async (attached: readonly AnyUNetWrapperV1[]): Promise<void> => {
    for (const wrapper of [...attached].reverse()) await wrapper.dispose().catch(() => undefined);
  };
  for (const [index, wrapper] of wrappers.entries()) {
    try {
      await wrapper.attach({ model, runtime: model.runtime, width, height, frameBufferSize: f, latentShape: [channels, latentHeight, latentWidth] });
    } catch (error) {
      await release(wrappers.slice(0, index + 1));
      throw error;
    }
  }
  let state = await buildInitialState().catch(async (error: unknown) => {
    await release(wrappers);
    throw error;
  });

  // Frames and updates' swaps run one at a time, in call order: an update lands between frames,
  // never in one. Updates also queue among themselves (`updates`) while they prepare.
  let queue: Promise<unknown> = Promise.resolve();
  let updates: Promise<unknown> = Promise.resolve();
  let disposed = false;
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(() => {
      if (disposed) throw new DisposedError('a StreamDiffusion pipeline');
      return task();
    });
    queue = run.catch(() => undefined);
    return run;
  };

  const embeddingWidth = capabilities.textEmbeddingWidth;
  /** Hidden states merged from the text embeddings and wrappers' tokens, kept while those arrays are. */
  const merges = hiddenStatesMemo();
  /** One UNet run of a frame: the pipeline's three inputs, then what each wrapper adds. */
  const unet = async (request: UnetRequest, frame: WrapperFrameV1, clock?: StageClock): Promise<Float32Array> => {
    const started = performance.now();
    const textEmbeddings = state.encoderHiddenStates(request.unconditional);
    // Without wrappers nothing else is computed per run: the text embeddings go in as they are.
    const added =
      wrappers.length === 0
        ? { inputs: {}, encoderHiddenStates: textEmbeddings, tokens: TEXT_TOKENS }
        : await wrapperContributions(
            wrappers,
            { ...request, steps: Array.from(request.timesteps, (timestep) => state.constants.timesteps.indexOf(timestep)), stepCount: state.constants.timesteps.length, textEmbeddings, frame },
            embeddingWidth,
            merges,
          );
    const { out_sample: prediction } = await model.sessions.run(
      'unet',
      {
        sample: hostTensor(request.latents, [request.batch, channels, latentHeight, latentWidth]),
        timestep: hostTensor(request.timesteps, [request.batch]),
        encoder_hidden_states: hostTensor(added.encoderHiddenStates, [request.batch, added.tokens, embeddingWidth]),
        ...added.inputs,
      },
      { read: ['out_sample'] },
    );
    const values = await prediction!.float32();
    if (clock !== undefined) clock.unet += performance.now() - started;
    return values;
  };

  const decoderInput = (latents: Float32Array): { latent_sample: HostTensor } => ({
    latent_sample: hostTensor(
      latents.map((value) => value / scaling),
      [f, channels, latentHeight, latentWidth],
    ),
  });
  /** x̂0 latents → `[f, 3, height, width]` decoded tensors in [-1, 1] on the host. */
  const decode = async (latents: Float32Array): Promise<Float32Array> => {
    const { sample } = await model.sessions.run('vae_decoder', decoderInput(latents), { read: ['sample'] });
    return sample!.float32();
  };
  /**
   * x̂0 latents → `[f, height, width, 3]` RGB pixels. The decoded tensor becomes pixels where it was
   * decoded (on the GPU on WebGPU), and only the uint8 pixels come back: no float readback, no
   * JavaScript loop over them.
   */
  const decodePixels = async (latents: Float32Array): Promise<Uint8Array> => {
    const { sample } = await model.sessions.run('vae_decoder', decoderInput(latents), { readPixels: ['sample'] });
    return (await sample!.data()) as Uint8Array;
  };
  const frameBytes = height * width * 3;
  const toImages = (pixels: Uint8Array): RgbImage[] =>
    Array.from({ length: f }, (_, frame) => ({ data: pixels.subarray(frame * frameBytes, (frame + 1) * frameBytes), width, height, channels: 3 as const }));

  const encode = async (images: Float32Array): Promise<Float32Array> => {
    if (!capabilities.imageToImage) {
      throw new InvalidArgumentError({ field: 'model', value: model.folder.root, expected: 'a model folder with vae_encoder/ for img2img' });
    }
    const { latent_sample: latents } = await model.sessions.run('vae_encoder', { sample: hostTensor(images, [f, 3, height, width]) }, { read: ['latent_sample'] });
    return (await latents!.float32()).map((value) => value * scaling);
  };

  /** The last processed frame, kept for the similarity filter's skips in whichever form was asked. */
  let previous: { latents: Float32Array; tensor?: Float32Array; pixels?: Uint8Array } | undefined;
  const imageSize = 3 * height * width;

  /** The decoded output in the form a call wants, decoded once per form. */
  type Output = 'tensor' | 'pixels';
  type Decoded<Form extends Output> = Form extends 'tensor' ? Float32Array : Uint8Array;
  const decodeAs = async <Form extends Output>(form: Form, latents: Float32Array, clock: StageClock): Promise<Decoded<Form>> => {
    const decoded = await clock.time<Float32Array | Uint8Array>('decode', () => (form === 'tensor' ? decode(latents) : decodePixels(latents)));
    return decoded as Decoded<Form>;
  };

  const imagesShape = `[${f}, 3, ${height}, ${width}] = ${f * imageSize} values`;
  /**
   * A frame for the wrappers. Its previous output is the one before the frame's turn: bound by
   * `begin()` when the turn comes, since the frame is made (and prepared) while the one before runs.
   */
  const frameOf = (input: Float32Array | undefined, given: Readonly<Record<string, Float32Array>> | undefined): { frame: WrapperFrameV1; begin: () => void } => {
    let turn: { kept: typeof previous } | undefined;
    let images: readonly RgbImage[] | undefined;
    const previousOutput = (): readonly RgbImage[] | undefined => {
      if (turn === undefined) {
        throw new InvalidArgumentError({ field: 'frame.previousOutput()', value: 'asked before the frame\'s turn', expected: 'a call from unetCall (in prepareFrame the frame before may still be running)' });
      }
      const { kept } = turn;
      if (kept === undefined) return undefined;
      // Made on first ask, from whichever form the output was kept in.
      images ??=
        kept.pixels !== undefined
          ? toImages(kept.pixels)
          : Array.from({ length: f }, (_, frame) => tensorToImage(kept.tensor!.subarray(frame * imageSize, (frame + 1) * imageSize), [1, 3, height, width]));
      return images;
    };
    return { frame: frameImages(wrappers, input, given, f * imageSize, imagesShape, previousOutput), begin: () => (turn = { kept: previous }) };
  };

  // The text encoder's weights changed (a LoRA applied or removed): every prompt is encoded again
  // and the state rebuilt, in the frame's turn, before it runs.
  let textEncoderRevision = model.textEncoderRevision;
  const encodeAgain = async (): Promise<void> => {
    const revision = model.textEncoderRevision;
    embeddings.clear();
    state = await buildState(state.parameters, state);
    textEncoderRevision = revision;
  };

  /**
   * Runs a frame's `task` in its turn. The wrappers prepare the frame now, beside the frame in
   * flight (a ControlNet's preprocessing overlaps the diffusion before it); the turn waits for that;
   * the wrappers release the frame however it ends.
   */
  const inTurn = async <T>({ frame, begin }: ReturnType<typeof frameOf>, task: () => Promise<T>): Promise<T> => {
    if (disposed) throw new DisposedError('a StreamDiffusion pipeline');
    const prepared = prepareFrames(wrappers, frame);
    // Awaited in the turn; a turn that never comes (disposed meanwhile) leaves the error unread.
    prepared.catch(() => undefined);
    try {
      return await serial(async () => {
        begin();
        await prepared;
        if (model.textEncoderRevision !== textEncoderRevision) await encodeAgain();
        return task();
      });
    } finally {
      await releaseFrames(wrappers, frame);
    }
  };

  type Pipeline = StreamDiffusion<WrappersParameters<Wrappers>, WrappersParametersInput<Wrappers>>;
  type UpdateResult = Awaited<ReturnType<Pipeline['update']>>;
  const runImg2Img = async <Form extends Output>(form: Form, images: Float32Array, options: FrameImagesOption<Float32Array> | undefined) => {
    if (images.length !== f * imageSize) {
      throw new InvalidArgumentError({ field: 'images', value: `${images.length} values`, expected: imagesShape });
    }
    const pending = frameOf(images, options?.images);
    return inTurn(pending, async () => {
      const clock = startClock();
      const { frame } = pending;
      const { batch, filter, constants, initNoise } = state;
      // The filter always processes the first frame, so `previous` exists whenever it skips.
      if (filter?.decide(images).skip === true && previous !== undefined) {
        const kept = previous;
        // A skip returns the last output, decoded again only if it was last asked for in the other form.
        const output = (form === 'tensor' ? kept.tensor : kept.pixels) ?? (await decodeAs(form, kept.latents, clock));
        if (form === 'tensor') kept.tensor = output as Float32Array;
        else kept.pixels = output as Uint8Array;
        return { images: output as Decoded<Form>, latents: kept.latents, warm: batch.warm, skipped: true, timings: clock.timings() };
      }
      const encoded = await clock.time('encode', () => encode(images));
      const denoised = await clock.time('scheduler', () => batch.step(addInputNoise({ constants, initNoise, frameBufferSize: f, slotSize }, encoded), (request) => unet(request, frame, clock)));
      const output = await decodeAs(form, denoised, clock);
      previous = form === 'tensor' ? { latents: denoised, tensor: output as Float32Array } : { latents: denoised, pixels: output as Uint8Array };
      return { images: output, latents: denoised, warm: batch.warm, skipped: false, timings: clock.timings() };
    });
  };

  const runTxt2Img = async <Form extends Output>(form: Form, options: FrameImagesOption<Float32Array> | undefined) => {
    const pending = frameOf(undefined, options?.images);
    return inTurn(pending, async () => {
      const clock = startClock();
      const { batch, textGenerator } = state;
      const denoised = await clock.time('scheduler', () => batch.step(textGenerator.randn(latentShape), (request) => unet(request, pending.frame, clock)));
      return { images: await decodeAs(form, denoised, clock), latents: denoised, warm: batch.warm, timings: clock.timings() };
    });
  };

  const img2imgTensor: Pipeline['img2imgTensor'] = (images, options) => runImg2Img('tensor', images, options);
  const txt2imgTensor: Pipeline['txt2imgTensor'] = (options) => runTxt2Img('tensor', options);

  const txt2imgOneStepTensor: Pipeline['txt2imgOneStepTensor'] = async (options) => {
    const pending = frameOf(undefined, options?.images);
    return inTurn(pending, () => oneStep(state, pending.frame));
  };

  const oneStep = async ({ constants, textGenerator, parameters }: FrameState, frame: WrapperFrameV1): Promise<{ images: Float32Array; latents: Float32Array }> => {
    if (constants.timesteps.length !== 1) {
      throw new InvalidArgumentError({ field: 't_index_list', value: parameters.t_index_list, expected: 'one entry for one-step txt2img' });
    }
    const noise = textGenerator.randn(latentShape);
    const timesteps = new Float32Array(f).fill(constants.timesteps[0]!);
    const prediction = await unet({ latents: noise, batch: f, timesteps, unconditional: new Array<boolean>(f).fill(false) }, frame);
    const alpha = constants.alpha[0]!;
    const beta = constants.beta[0]!;
    const latents = noise.map((x, index) => Math.fround(x - Math.fround(beta * prediction[index]!)) / alpha);
    return { images: await decode(latents), latents };
  };

  /** f images (files, buffers) → `[f, 3, height, width]` in [-1, 1], resized to the pipeline's size. */
  const toTensor = async (field: string, frames: ImageSource | readonly ImageSource[]): Promise<Float32Array> => {
    const list = Array.isArray(frames) ? (frames as readonly ImageSource[]) : [frames as ImageSource];
    if (list.length !== f) throw new InvalidArgumentError({ field, value: `${list.length} frames`, expected: `frame_buffer_size = ${f} frames` });
    const images = new Float32Array(f * imageSize);
    for (const [index, frame] of list.entries()) images.set((await imageToTensor(frame, { width, height })).data, index * imageSize);
    return images;
  };
  const toTensors = async (given: Readonly<Record<string, ImageSource | readonly ImageSource[]>> | undefined): Promise<FrameImagesOption<Float32Array>> =>
    given === undefined
      ? {}
      : { images: Object.fromEntries(await Promise.all(Object.entries(given).map(async ([name, frames]) => [name, await toTensor(`images.${name}`, frames)] as const))) };

  const reloadKeys = new Set(Object.keys(reloadParameters));
  const hotKeys = new Set(Object.keys(hotParametersSchema.shape));
  let disposing: Promise<void> | undefined;
  const dispose = (): Promise<void> =>
    (disposing ??= serial(async () => {
      disposed = true;
      const failures: unknown[] = [];
      for (const wrapper of [...wrappers].reverse()) await wrapper.dispose().catch((error: unknown) => failures.push(error));
      if (failures.length > 0) throw failures[0];
    }));

  return {
    width,
    height,
    frameBufferSize: f,
    wrappers,
    parametersSchema: updateSchema as unknown as Pipeline['parametersSchema'],
    img2imgTensor,
    txt2imgTensor,
    txt2imgOneStepTensor,
    getState: () =>
      Object.assign(
        { ...state.parameters, t_index_list: [...state.parameters.t_index_list], ...reloadParameters },
        ...wrappers.map((wrapper) => wrapper.getState() as object),
      ) as ReturnType<Pipeline['getState']>,
    update(partial) {
      if (disposed) throw new DisposedError('a StreamDiffusion pipeline');
      const parsed = updateSchema.safeParse(partial);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const field = issue.path.map(String).join('.') || 'update';
        throw new InvalidArgumentError({ field, value: valueAt(partial, issue.path), expected: expectedOf(issue) });
      }
      const data = parsed.data as Record<string, unknown>;
      const changes = Object.fromEntries(Object.entries(data).filter(([key]) => hotKeys.has(key))) as Partial<HotParameters>;
      const wrapperChanges = Object.fromEntries(Object.entries(data).filter(([key]) => !hotKeys.has(key) && !reloadKeys.has(key)));
      const needsReload = (Object.keys(reloadParameters) as (keyof ReloadParameters)[]).filter((key) => key in data && data[key] !== reloadParameters[key]);
      // Updates run one at a time among themselves. Their slow part (wrapper models loading, new
      // prompts encoding) runs beside the frames, which keep going; only the swap waits for the
      // frame in flight and lands between two frames.
      const run = async (): Promise<UpdateResult> => {
        if (disposed) throw new DisposedError('a StreamDiffusion pipeline');
        const current = state.parameters;
        const next: HotParameters = { ...current, ...changes, t_index_list: [...(changes.t_index_list ?? current.t_index_list)] };
        const applied = (Object.keys(changes) as (keyof HotParameters)[]).filter((key) => JSON.stringify(changes[key]) !== JSON.stringify(current[key]));
        const prepared = await prepareWrapperUpdates(wrappers, wrapperChanges);
        try {
          // New prompts are encoded here, beside the frames; the state is built and swapped between
          // frames, so a failure anywhere leaves the stream as it was.
          const revision = model.textEncoderRevision;
          const embedded = applied.length > 0 ? await promptEmbeddings(next) : undefined;
          return await serial(async () => {
            // A LoRA swapped the text encoder meanwhile: those embeddings are stale, encode in turn.
            const fresh = model.textEncoderRevision === revision ? embedded : undefined;
            const nextState = embedded !== undefined ? await buildState(next, state, fresh) : state;
            prepared.commit();
            state = nextState;
            return {
              applied: [...applied, ...prepared.applied] as UpdateResult['applied'],
              needsReload: [...needsReload, ...prepared.needsReload] as UpdateResult['needsReload'],
            };
          });
        } catch (error) {
          await prepared.abandon();
          throw error;
        }
      };
      const result = updates.then(run, run);
      updates = result.catch(() => undefined);
      return result;
    },
    // Pixels come back from the decoder already converted (see decodePixels); postprocess only
    // splits them into one image per frame.
    async img2img(frames, options) {
      const started = performance.now();
      const images = await toTensor('frames', frames);
      const given = await toTensors(options?.images);
      const preprocess = performance.now() - started;
      const result = await runImg2Img('pixels', images, given);
      const decoded = performance.now();
      const output = toImages(result.images);
      const ended = performance.now();
      return { images: output, warm: result.warm, skipped: result.skipped, timings: { ...result.timings, preprocess, postprocess: ended - decoded, total: ended - started } };
    },
    async txt2img(options) {
      const started = performance.now();
      const result = await runTxt2Img('pixels', await toTensors(options?.images));
      const decoded = performance.now();
      const output = toImages(result.images);
      const ended = performance.now();
      return { images: output, warm: result.warm, skipped: false, timings: { ...result.timings, postprocess: ended - decoded, total: ended - started } };
    },
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}
