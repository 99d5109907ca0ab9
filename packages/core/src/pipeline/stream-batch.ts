/**
 * The StreamDiffusion stream batch: the denoising state carried from frame to frame, and the math
 * of one frame — residual CFG, the LCM boundary-condition step and the buffer refill — on host
 * float32 arrays. Models are called through {@link UnetCall}, so this file knows no runtime.
 *
 * Notation (DESIGN §4): n = steps (t_index_list length), f = frames per call (frame_buffer_size),
 * B = n·f slots of S = 4·h·w latent values each. Slot k belongs to step ⌊k / f⌋.
 *
 * Fixed relative to the Python original (cumulo-autumn/StreamDiffusion, pipeline.py):
 * - everything that moves state between steps is shifted by f slots, not by 1 (`[1:]`, `[:-1]`,
 *   `[-1]`, `[0:1]` there), so f > 1 with n > 1 denoises each frame through every step;
 * - the f new frames get f different noise slots (the original adds init_noise[0] to all of them).
 * With f = 1 both are identical to the original.
 */
import { InvalidArgumentError } from '../errors/errors.js';

/** Residual classifier-free guidance modes. */
export const CFG_TYPES = Object.freeze(['none', 'self', 'initialize', 'full'] as const);
/** How the unconditional prediction is obtained (none, self = stock noise, initialize, full). */
export type CfgType = (typeof CFG_TYPES)[number];

/** Per-step constants, one entry per t_index (length n). */
export interface StepConstants {
  /** UNet timesteps. */
  readonly timesteps: readonly number[];
  /** √ᾱ_t and √(1 − ᾱ_t). */
  readonly alpha: Float32Array;
  readonly beta: Float32Array;
  /** LCM boundary-condition scalings. */
  readonly cSkip: Float32Array;
  readonly cOut: Float32Array;
}

/** One UNet call: latents `[batch, 4, h, w]`, a timestep per batch entry, and which prompt rows to use. */
export interface UnetRequest {
  readonly latents: Float32Array;
  readonly batch: number;
  readonly timesteps: Float32Array;
  /** Per batch entry: condition on the negative (unconditional) prompt instead of the prompt. */
  readonly unconditional: readonly boolean[];
}

/** Runs the UNet; returns the noise prediction, `[batch, 4, h, w]`. */
export type UnetCall = (request: UnetRequest) => Promise<Float32Array>;

/** Settings of a stream batch. */
export interface StreamBatchSettings {
  readonly constants: StepConstants;
  /** f: frames per call. */
  readonly frameBufferSize: number;
  /** Values per latent slot (4·h·w). */
  readonly slotSize: number;
  readonly cfgType: CfgType;
  /** γ; guidance is active only when γ > 1. */
  readonly guidanceScale: number;
  /** δ: scales the stock noise used as the unconditional prediction (self, initialize). */
  readonly delta: number;
  /** Refill the buffer with noise (α·x̂0 + β·noise) or without (α·x̂0). */
  readonly addNoise: boolean;
  /** B = n·f seeded noise values per slot, fixed until the seed changes. */
  readonly initNoise: Float32Array;
}

/** What a stream batch carries from frame to frame, to hand to a reconfigured one of the same shape. */
export interface StreamBatchCarry {
  readonly buffer: Float32Array;
  readonly stockNoise: Float32Array;
  readonly calls: number;
}

/** The state of one stream: what carries over from one frame to the next. */
export interface StreamBatch {
  /** Copies of the carried state, so new settings (guidance, constants, noise) can continue this stream. */
  carry(): StreamBatchCarry;
  /**
   * Denoises one call's f noised input latents (x_in = α₀·z + β₀·noise₀, see {@link addInputNoise})
   * through one UNet call on [x_in, buffer] and returns the f most-denoised latents x̂0.
   */
  step(inputLatents: Float32Array, unet: UnetCall): Promise<Float32Array>;
  /** Calls made so far. */
  readonly calls: number;
  /** True once outputs have been through every step (after n calls with a denoising batch; always without). */
  readonly warm: boolean;
}

function check(condition: boolean, field: string, value: unknown, expected: string): void {
  if (!condition) throw new InvalidArgumentError({ field, value, expected });
}

/**
 * The LCM boundary-condition step for one value, in PyTorch's float32 order of operations:
 * x̂0 = c_out·(x − β·ε)/α + c_skip·x.
 */
function boundaryStep(x: number, epsilon: number, step: { a: number; b: number; cSkip: number; cOut: number }): number {
  const f0 = Math.fround(Math.fround(x - Math.fround(step.b * epsilon)) / step.a);
  return Math.fround(step.cOut * f0) + Math.fround(step.cSkip * x);
}

/** Classifier-free guidance for one value: ε = ε_u + γ(ε_c − ε_u), float32 steps. */
function guide(conditional: number, unconditional: number, guidanceScale: number): number {
  return unconditional + Math.fround(guidanceScale * Math.fround(conditional - unconditional));
}

/** x_in = α₀·z + β₀·noise[0..f): the first step's noising of freshly encoded latents. */
export function addInputNoise(settings: Pick<StreamBatchSettings, 'constants' | 'initNoise' | 'frameBufferSize' | 'slotSize'>, latents: Float32Array): Float32Array {
  const alpha = settings.constants.alpha[0]!;
  const beta = settings.constants.beta[0]!;
  const noised = new Float32Array(latents.length);
  for (let index = 0; index < latents.length; index += 1) {
    noised[index] = Math.fround(alpha * latents[index]!) + Math.fround(beta * settings.initNoise[index]!);
  }
  return noised;
}

/**
 * Makes the stream batch state for one stream; `carried` continues an earlier batch of the same
 * n and f (its buffer, stock noise and call count) under new settings.
 */
export function createStreamBatch(settings: StreamBatchSettings, carried?: StreamBatchCarry): StreamBatch {
  const { constants, frameBufferSize: f, slotSize: size, cfgType, guidanceScale, delta, addNoise, initNoise } = settings;
  const n = constants.timesteps.length;
  const slots = n * f;
  check(n >= 1, 't_index_list', constants.timesteps, 'at least one step');
  check(Number.isInteger(f) && f >= 1, 'frame_buffer_size', f, 'an integer >= 1');
  check(initNoise.length === slots * size, 'init_noise', initNoise.length, `${slots * size} values (n·f slots)`);
  const guided = guidanceScale > 1 && cfgType !== 'none';
  // Per-slot constants: slot k uses step ⌊k / f⌋.
  const perSlot = (values: ArrayLike<number>): Float32Array => Float32Array.from({ length: slots }, (_, slot) => values[Math.floor(slot / f)]!);
  const alpha = perSlot(constants.alpha);
  const beta = perSlot(constants.beta);
  const cSkip = perSlot(constants.cSkip);
  const cOut = perSlot(constants.cOut);
  const timesteps = perSlot(constants.timesteps);
  // α and β of the next step for each slot; the last step's are 1 (no next step).
  const alphaNext = Float32Array.from({ length: slots }, (_, slot) => (slot + f < slots ? alpha[slot + f]! : 1));
  const betaNext = Float32Array.from({ length: slots }, (_, slot) => (slot + f < slots ? beta[slot + f]! : 1));

  let buffer = new Float32Array((n - 1) * f * size);
  let stockNoise = new Float32Array(slots * size);
  let calls = 0;
  if (carried !== undefined) {
    check(carried.buffer.length === buffer.length && carried.stockNoise.length === stockNoise.length, 'carried', carried.buffer.length, `a batch of the same n and f (${buffer.length} buffer values)`);
    buffer = carried.buffer.slice();
    stockNoise = carried.stockNoise.slice();
    calls = carried.calls;
  }

  /** The LCM boundary-condition step, slot by slot with each slot's constants. */
  const denoise = (prediction: Float32Array, latents: Float32Array): Float32Array => {
    const out = new Float32Array(latents.length);
    for (let slot = 0; slot < slots; slot += 1) {
      const step = { a: alpha[slot]!, b: beta[slot]!, cSkip: cSkip[slot]!, cOut: cOut[slot]! };
      for (let index = slot * size; index < (slot + 1) * size; index += 1) out[index] = boundaryStep(latents[index]!, prediction[index]!, step);
    }
    return out;
  };

  return {
    carry: () => ({ buffer: buffer.slice(), stockNoise: stockNoise.slice(), calls }),
    get calls() {
      return calls;
    },
    get warm() {
      return calls >= n;
    },
    async step(inputLatents, unet) {
      check(inputLatents.length === f * size, 'latents', inputLatents.length, `${f * size} values (f slots)`);
      const latents = new Float32Array(slots * size);
      latents.set(inputLatents, 0);
      latents.set(buffer, f * size);
      if (n > 1) {
        // The stock noise moves one step along with its latents; the new frames start from init noise.
        const shifted = new Float32Array(slots * size);
        shifted.set(initNoise.subarray(0, f * size), 0);
        shifted.set(stockNoise.subarray(0, (slots - f) * size), f * size);
        stockNoise = shifted;
      }

      // Build the UNet batch: [uncond rows for the first step (initialize) | all (full)], then the batch.
      const extra = guidanceScale > 1 && cfgType === 'initialize' ? f : guidanceScale > 1 && cfgType === 'full' ? slots : 0;
      const batch = extra + slots;
      const unetLatents = new Float32Array(batch * size);
      unetLatents.set(latents.subarray(0, extra * size), 0);
      unetLatents.set(latents, extra * size);
      const unetTimesteps = new Float32Array(batch);
      unetTimesteps.set(timesteps.subarray(0, extra), 0);
      unetTimesteps.set(timesteps, extra);
      const unconditional = Array.from({ length: batch }, (_, row) => row < extra);
      const raw = await unet({ latents: unetLatents, batch, timesteps: unetTimesteps, unconditional });

      const text = raw.subarray(extra * size);
      let uncond: Float32Array | undefined;
      if (guidanceScale > 1 && cfgType === 'initialize') {
        // The real unconditional pass of the first step replaces its stock noise.
        stockNoise.set(raw.subarray(0, f * size), 0);
      }
      if (guidanceScale > 1 && cfgType === 'full') uncond = raw.subarray(0, slots * size);
      if (guidanceScale > 1 && (cfgType === 'self' || cfgType === 'initialize')) {
        uncond = stockNoise.map((value) => Math.fround(value * delta));
      }
      let prediction: Float32Array = text;
      if (guided && uncond !== undefined) {
        const unconditional = uncond;
        prediction = text.map((conditional, index) => guide(conditional, unconditional[index]!, guidanceScale));
      }
      const denoised = denoise(prediction, latents);

      if (cfgType === 'self' || cfgType === 'initialize') {
        // Residual CFG: how the model's prediction moved the noise, carried to the next step.
        const scaledNoise = new Float32Array(slots * size);
        for (let index = 0; index < scaledNoise.length; index += 1) scaledNoise[index] = Math.fround(beta[Math.floor(index / size)]! * stockNoise[index]!);
        const deltaX = denoise(prediction, scaledNoise);
        const next = new Float32Array(slots * size);
        for (let slot = 0; slot < slots; slot += 1) {
          const rotated = ((slot + f) % slots) * size; // init noise rotated by f slots
          for (let offset = 0; offset < size; offset += 1) {
            const index = slot * size + offset;
            const moved = Math.fround(Math.fround(alphaNext[slot]! * deltaX[index]!) / betaNext[slot]!);
            next[index] = initNoise[rotated + offset]! + moved;
          }
        }
        stockNoise = next;
      }

      calls += 1;
      if (n === 1) return denoised;
      // Refill the buffer: slot k (steps 0..n−2) moves to step k+1, noised to that step's level.
      const refilled = new Float32Array((n - 1) * f * size);
      for (let slot = 0; slot < slots - f; slot += 1) {
        const a = alpha[slot + f]!;
        const b = beta[slot + f]!;
        for (let offset = 0; offset < size; offset += 1) {
          const index = slot * size + offset;
          const kept = Math.fround(a * denoised[index]!);
          refilled[index] = addNoise ? kept + Math.fround(b * initNoise[(slot + f) * size + offset]!) : kept;
        }
      }
      buffer = refilled;
      return denoised.slice((slots - f) * size);
    },
  };
}

/**
 * Without a denoising batch (`use_denoising_batch: false`): each call runs its f frames through the
 * n steps one UNet call after another, re-noising between steps with fresh noise from `stepNoise`
 * (the original draws it with `torch.randn_like` from torch's global generator). Every output is
 * fully denoised, so there is no warm-up. `initNoise` needs only f slots here.
 *
 * As in the original, the stock noise of `self` stays zero in this mode (its residual update is a
 * denoising-batch feature) and `initialize` keeps the last unconditional prediction as stock noise.
 */
export function createSequentialBatch(settings: StreamBatchSettings & { readonly stepNoise: () => Float32Array }, carried?: StreamBatchCarry): StreamBatch {
  const { constants, frameBufferSize: f, slotSize: size, cfgType, guidanceScale, delta, addNoise, initNoise, stepNoise } = settings;
  const n = constants.timesteps.length;
  check(n >= 1, 't_index_list', constants.timesteps, 'at least one step');
  check(Number.isInteger(f) && f >= 1, 'frame_buffer_size', f, 'an integer >= 1');
  check(initNoise.length >= f * size, 'init_noise', initNoise.length, `at least ${f * size} values (f slots)`);
  const guided = guidanceScale > 1 && cfgType !== 'none';
  const extra = guidanceScale > 1 && cfgType === 'initialize' ? f : guidanceScale > 1 && cfgType === 'full' ? f : 0;
  let stockNoise = carried?.stockNoise.length === f * size ? carried.stockNoise.slice() : new Float32Array(f * size);
  let calls = carried?.calls ?? 0;
  return {
    carry: () => ({ buffer: new Float32Array(0), stockNoise: stockNoise.slice(), calls }),
    get calls() {
      return calls;
    },
    get warm() {
      return true;
    },
    async step(inputLatents, unet) {
      check(inputLatents.length === f * size, 'latents', inputLatents.length, `${f * size} values (f slots)`);
      let latents = inputLatents;
      let denoised = new Float32Array(f * size);
      for (let step = 0; step < n; step += 1) {
        const batch = extra + f;
        const unetLatents = new Float32Array(batch * size);
        unetLatents.set(latents.subarray(0, extra * size), 0);
        unetLatents.set(latents, extra * size);
        const unconditional = Array.from({ length: batch }, (_, row) => row < extra);
        const raw = await unet({ latents: unetLatents, batch, timesteps: new Float32Array(batch).fill(constants.timesteps[step]!), unconditional });
        const text = raw.subarray(extra * size);
        let uncond: Float32Array | undefined;
        if (guidanceScale > 1 && cfgType === 'initialize') stockNoise = raw.slice(0, f * size);
        if (guidanceScale > 1 && cfgType === 'full') uncond = raw.subarray(0, f * size);
        if (guidanceScale > 1 && (cfgType === 'self' || cfgType === 'initialize')) uncond = stockNoise.map((value) => Math.fround(value * delta));
        const constantsOfStep = { a: constants.alpha[step]!, b: constants.beta[step]!, cSkip: constants.cSkip[step]!, cOut: constants.cOut[step]! };
        const current = latents;
        denoised = new Float32Array(f * size);
        for (let index = 0; index < denoised.length; index += 1) {
          const epsilon = guided && uncond !== undefined ? guide(text[index]!, uncond[index]!, guidanceScale) : text[index]!;
          denoised[index] = boundaryStep(current[index]!, epsilon, constantsOfStep);
        }
        if (step < n - 1) {
          const nextAlpha = constants.alpha[step + 1]!;
          const nextBeta = constants.beta[step + 1]!;
          const noise = addNoise ? stepNoise() : undefined;
          latents = denoised.map((value, index) => (noise === undefined ? Math.fround(nextAlpha * value) : Math.fround(nextAlpha * value) + Math.fround(nextBeta * noise[index]!)));
        }
      }
      calls += 1;
      return denoised;
    },
  };
}
