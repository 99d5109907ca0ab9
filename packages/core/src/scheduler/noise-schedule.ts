import { fmaFloat32 } from '../math/float32-fma.js';

/** Beta schedules diffusers' `LCMScheduler` implements (besides explicit `trained_betas`). */
export type BetaScheduleName = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/** What fixes the noise levels of the training timesteps. */
export interface NoiseScheduleSettings {
  readonly numTrainTimesteps: number;
  readonly betaSchedule: BetaScheduleName;
  readonly betaStart: number;
  readonly betaEnd: number;
  /** Explicit betas (length `numTrainTimesteps`), overriding the schedule. */
  readonly trainedBetas?: readonly number[] | undefined;
  /** diffusers' `rescale_betas_zero_snr`: shift and scale √ᾱ so the last timestep has ᾱ = 0. */
  readonly rescaleBetasZeroSnr: boolean;
}

/** Per training timestep: the betas and ᾱ = ∏(1 − β), float32 as diffusers holds them. */
export interface NoiseSchedule {
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
}

/**
 * Computes betas and ᾱ exactly as diffusers' `LCMScheduler.__init__` does on the CPU, float32
 * rounding included, so the constants derived from them match the Python pipeline bit for bit.
 */
export function computeNoiseSchedule(settings: NoiseScheduleSettings): NoiseSchedule {
  let betas = settings.trainedBetas ? Float32Array.from(settings.trainedBetas) : scheduleBetas(settings);
  if (settings.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return { betas, alphasCumprod: cumulativeProduct(oneMinus(betas)) };
}

function scheduleBetas(settings: NoiseScheduleSettings): Float32Array {
  const { numTrainTimesteps: steps, betaStart, betaEnd } = settings;
  switch (settings.betaSchedule) {
    case 'linear':
      return torchLinspace(betaStart, betaEnd, steps);
    case 'scaled_linear':
      // Python takes the square roots in double (`beta_start**0.5`); the linspace and the squares
      // are float32 tensors.
      return torchLinspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), steps).map((root) => Math.fround(root * root));
    case 'squaredcos_cap_v2':
      return cosineBetas(steps);
  }
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the first half counts up
 * from `start`, the second half down from `end`, each value one fused multiply-add (the AVX2,
 * AVX512 and ARM builds; torch's baseline x86 build rounds twice and differs in the last bit of
 * about one value in ten).
 */
function torchLinspace(start: number, end: number, steps: number): Float32Array {
  const first = Math.fround(start);
  const last = Math.fround(end);
  if (steps === 1) return Float32Array.of(first);
  const step = Math.fround(Math.fround(last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const values = new Float32Array(steps);
  for (let index = 0; index < steps; index += 1) {
    // Indices are small integers, so exact float32 operands of the fused multiply-add.
    values[index] = index < halfway ? fmaFloat32(step, index, first) : fmaFloat32(-step, steps - index - 1, last);
  }
  return values;
}

/** The Glide cosine schedule (diffusers' `betas_for_alpha_bar`), computed in double like Python. */
function cosineBetas(steps: number): Float32Array {
  const alphaBar = (t: number): number => {
    const cosine = Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2);
    return cosine * cosine;
  };
  const betas = new Float32Array(steps);
  for (let index = 0; index < steps; index += 1) {
    betas[index] = Math.min(1 - alphaBar((index + 1) / steps) / alphaBar(index / steps), 0.999);
  }
  return betas;
}

/** diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, algorithm 1), one float32 op at a time. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const roots = cumulativeProduct(oneMinus(betas)).map((value) => Math.sqrt(value));
  const first = roots[0]!;
  const last = roots[roots.length - 1]!;
  const scale = Math.fround(first / Math.fround(first - last));
  const alphasBar = roots.map((root) => {
    const shifted = Math.fround(Math.fround(root - last) * scale);
    return shifted * shifted;
  });
  const rescaled = new Float32Array(betas.length);
  for (let index = 0; index < betas.length; index += 1) {
    const alpha = index === 0 ? alphasBar[0]! : Math.fround(alphasBar[index]! / alphasBar[index - 1]!);
    rescaled[index] = 1 - alpha;
  }
  return rescaled;
}

function oneMinus(values: Float32Array): Float32Array {
  return values.map((value) => 1 - value);
}

/**
 * `torch.cumprod` of a float32 tensor on the CPU: the running product is kept in double and only
 * each output is rounded to float32 (a float32 running product drifts from it after a few steps).
 */
function cumulativeProduct(values: Float32Array): Float32Array {
  const products = new Float32Array(values.length);
  let product = 1;
  for (const [index, value] of values.entries()) {
    product *= value;
    products[index] = product;
  }
  return products;
}
