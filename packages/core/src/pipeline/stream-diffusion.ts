/**
 * The StreamDiffusion pipeline over a loaded model folder: prompt embeddings computed once, seeded
 * noise, the LCM constants, the stream batch, the similarity filter, and images in and out.
 * Runs models through the runtime's worker; the stream-batch math runs on host float32 arrays.
 */
import { InvalidArgumentError } from '../errors/errors.js';
import { imageToTensor, tensorToImage, type ImageSource, type RgbImage } from '../image/image.js';
import type { LoadedModel } from '../model-folder/load-model.js';
import { createTorchGenerator } from '../noise/torch-generator.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { createLcmSchedule } from '../scheduler/lcm-schedule.js';
import { createSimilarityFilter, type SimilarityFilter, type SimilarityFilterOptions } from '../stream/similarity-filter.js';
import { addInputNoise, CFG_TYPES, createSequentialBatch, createStreamBatch, type CfgType, type StreamBatch, type UnetRequest } from './stream-batch.js';

/** Options of {@link createStreamDiffusion}; defaults are the Python original's. */
export interface StreamDiffusionOptions {
  readonly model: LoadedModel;
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
  /** Skip near-identical input frames (img2img only); off by default. */
  readonly similarityFilter?: SimilarityFilterOptions | false;
}

/** One call's result: f output images, and whether the stream was past warm-up. */
export interface StreamDiffusionResult {
  readonly images: RgbImage[];
  /**
   * False for the first n − 1 calls (n = t_index_list length): their outputs have not been through
   * every step yet (the buffer started empty), exactly as in the Python original.
   */
  readonly warm: boolean;
  /** True when the similarity filter skipped this input and the previous output was returned. */
  readonly skipped: boolean;
}

/** A running StreamDiffusion pipeline. */
export interface StreamDiffusion {
  /** f = frameBufferSize input frames (any size, RGB/RGBA, files or buffers) → f output images. */
  img2img(frames: ImageSource | readonly ImageSource[]): Promise<StreamDiffusionResult>;
  /**
   * The same on `[f, 3, height, width]` tensors in [-1, 1] → decoded tensors in [-1, 1], with the
   * denoised latents x̂0 `[f, 4, h, w]` that were decoded (scaled, as the UNet sees them).
   */
  img2imgTensor(images: Float32Array): Promise<{ readonly images: Float32Array; readonly latents: Float32Array; readonly warm: boolean; readonly skipped: boolean }>;
  /**
   * Text to image: the stream batch run from pure noise. The noise comes from its own generator,
   * seeded with `seed` (as `torch.randn` after `torch.manual_seed(seed)` in the original).
   */
  txt2img(): Promise<StreamDiffusionResult>;
  /** `[f, 3, height, width]` decoded tensors of txt2img, with the x̂0 latents decoded. */
  txt2imgTensor(): Promise<{ readonly images: Float32Array; readonly latents: Float32Array; readonly warm: boolean }>;
  /**
   * One-step text to image for SD-Turbo (the original's `txt2img_sd_turbo`): x̂0 = (x − β·ε)/α from
   * noise in a single UNet call, no stream state. Needs a t_index_list of length 1.
   */
  txt2imgOneStepTensor(): Promise<{ readonly images: Float32Array; readonly latents: Float32Array }>;
  readonly width: number;
  readonly height: number;
  readonly frameBufferSize: number;
}

function option<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

/** Prepares a pipeline: schedule constants, seeded noise and prompt embeddings, each once. */
export async function createStreamDiffusion(options: StreamDiffusionOptions): Promise<StreamDiffusion> {
  const { model } = options;
  const { capabilities } = model;
  const width = option(options.width, 512);
  const height = option(options.height, 512);
  const factor = capabilities.vae.spatialFactor;
  // The VAE divides by 8 and the UNet's three downsamplings by 8 more: latents must split evenly.
  const multiple = factor * 8;
  for (const [field, value] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new InvalidArgumentError({ field, value, expected: `a positive multiple of ${multiple} (VAE ×${factor}, UNet ×8)` });
    }
  }
  const cfgType = option(options.cfgType, 'self');
  if (!(CFG_TYPES as readonly string[]).includes(cfgType)) {
    throw new InvalidArgumentError({ field: 'cfg_type', value: cfgType, expected: CFG_TYPES.join(' | ') });
  }
  const f = option(options.frameBufferSize, 1);
  const guidanceScale = option(options.guidanceScale, 1.2);
  const latentHeight = height / factor;
  const latentWidth = width / factor;
  const channels = capabilities.latentChannels;
  const slotSize = channels * latentHeight * latentWidth;
  const scaling = capabilities.vae.scalingFactor;

  const constants = createLcmSchedule(model.folder.scheduler).streamConstants({
    numInferenceSteps: option(options.numInferenceSteps, 50),
    tIndexList: option(options.tIndexList, [32, 45]),
  });
  const n = constants.timesteps.length;
  const useDenoisingBatch = option(options.useDenoisingBatch, true);
  const generator = createTorchGenerator(option(options.seed, 2));
  // The original draws n·f noise slots with a denoising batch, f without.
  const initNoise = generator.randn([useDenoisingBatch ? n * f : f, channels, latentHeight, latentWidth]);
  const batchSettings = {
    constants,
    frameBufferSize: f,
    slotSize,
    cfgType,
    guidanceScale,
    delta: option(options.delta, 1),
    addNoise: option(options.addNoise, true),
    initNoise,
  };
  // Noise between steps without a denoising batch: the original's torch.randn_like after torch.manual_seed(seed).
  const stepGenerator = createTorchGenerator(option(options.seed, 2));
  const batch: StreamBatch = useDenoisingBatch
    ? createStreamBatch(batchSettings)
    : createSequentialBatch({ ...batchSettings, stepNoise: () => stepGenerator.randn([f, channels, latentHeight, latentWidth]) });

  // Prompt embeddings, once: the conditional row, and the unconditional one when a cfg type uses it.
  const embed = async (prompt: string): Promise<Float32Array> => {
    const tensor = await model.prompts.encode(prompt);
    const values = await tensor.float32();
    await tensor.dispose();
    return values;
  };
  const conditional = await embed(options.prompt);
  const needsUnconditional = guidanceScale > 1 && (cfgType === 'initialize' || cfgType === 'full');
  const unconditional = needsUnconditional ? await embed(option(options.negativePrompt, '')) : conditional;
  const rowSize = conditional.length;
  const tokens = rowSize / capabilities.textEmbeddingWidth;
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

  const unet = async (request: UnetRequest): Promise<Float32Array> => {
    const { out_sample: prediction } = await model.sessions.run(
      'unet',
      {
        sample: hostTensor(request.latents, [request.batch, channels, latentHeight, latentWidth]),
        timestep: hostTensor(request.timesteps, [request.batch]),
        encoder_hidden_states: hostTensor(encoderHiddenStates(request.unconditional), [request.batch, tokens, capabilities.textEmbeddingWidth]),
      },
      { read: ['out_sample'] },
    );
    return prediction!.float32();
  };

  const decode = async (latents: Float32Array): Promise<Float32Array> => {
    const unscaled = latents.map((value) => value / scaling);
    const { sample } = await model.sessions.run(
      'vae_decoder',
      { latent_sample: hostTensor(unscaled, [f, channels, latentHeight, latentWidth]) },
      { read: ['sample'] },
    );
    return sample!.float32();
  };

  const encode = async (images: Float32Array): Promise<Float32Array> => {
    if (!capabilities.imageToImage) {
      throw new InvalidArgumentError({ field: 'model', value: model.folder.root, expected: 'a model folder with vae_encoder/ for img2img' });
    }
    const { latent_sample: latents } = await model.sessions.run('vae_encoder', { sample: hostTensor(images, [f, 3, height, width]) }, { read: ['latent_sample'] });
    return (await latents!.float32()).map((value) => value * scaling);
  };

  const filter: SimilarityFilter | undefined = options.similarityFilter ? createSimilarityFilter(options.similarityFilter) : undefined;
  let previous: { images: Float32Array; latents: Float32Array } | undefined;
  const imageSize = 3 * height * width;

  const toImages = (decoded: Float32Array): RgbImage[] =>
    Array.from({ length: f }, (_, frame) => tensorToImage(decoded.subarray(frame * imageSize, (frame + 1) * imageSize), [1, 3, height, width]));

  const img2imgTensor: StreamDiffusion['img2imgTensor'] = async (images) => {
    if (images.length !== f * imageSize) {
      throw new InvalidArgumentError({ field: 'images', value: `${images.length} values`, expected: `[${f}, 3, ${height}, ${width}] = ${f * imageSize} values` });
    }
    // The filter always processes the first frame, so `previous` exists whenever it skips.
    if (filter?.decide(images).skip === true && previous !== undefined) {
      return { ...previous, warm: batch.warm, skipped: true };
    }
    const latents = addInputNoise({ constants, initNoise, frameBufferSize: f, slotSize }, await encode(images));
    const denoised = await batch.step(latents, unet);
    previous = { images: await decode(denoised), latents: denoised };
    return { ...previous, warm: batch.warm, skipped: false };
  };

  const textGenerator = createTorchGenerator(option(options.seed, 2));
  const txt2imgTensor: StreamDiffusion['txt2imgTensor'] = async () => {
    const noise = textGenerator.randn([f, channels, latentHeight, latentWidth]);
    const denoised = await batch.step(noise, unet);
    return { images: await decode(denoised), latents: denoised, warm: batch.warm };
  };

  const txt2imgOneStepTensor: StreamDiffusion['txt2imgOneStepTensor'] = async () => {
    if (n !== 1) {
      throw new InvalidArgumentError({ field: 't_index_list', value: options.tIndexList, expected: 'one entry for one-step txt2img' });
    }
    const noise = textGenerator.randn([f, channels, latentHeight, latentWidth]);
    const timesteps = new Float32Array(f).fill(constants.timesteps[0]!);
    const prediction = await unet({ latents: noise, batch: f, timesteps, unconditional: new Array<boolean>(f).fill(false) });
    const alpha = constants.alpha[0]!;
    const beta = constants.beta[0]!;
    const latents = noise.map((x, index) => Math.fround(x - Math.fround(beta * prediction[index]!)) / alpha);
    return { images: await decode(latents), latents };
  };

  return {
    width,
    height,
    frameBufferSize: f,
    img2imgTensor,
    txt2imgTensor,
    txt2imgOneStepTensor,
    async img2img(frames) {
      const list = Array.isArray(frames) ? (frames as readonly ImageSource[]) : [frames as ImageSource];
      if (list.length !== f) throw new InvalidArgumentError({ field: 'frames', value: `${list.length} frames`, expected: `frame_buffer_size = ${f} frames` });
      const images = new Float32Array(f * imageSize);
      for (const [index, frame] of list.entries()) images.set((await imageToTensor(frame, { width, height })).data, index * imageSize);
      const result = await img2imgTensor(images);
      return { images: toImages(result.images), warm: result.warm, skipped: result.skipped };
    },
    async txt2img() {
      const result = await txt2imgTensor();
      return { images: toImages(result.images), warm: result.warm, skipped: false };
    },
  };
}
