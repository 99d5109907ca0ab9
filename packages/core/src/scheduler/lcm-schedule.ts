import { InvalidArgumentError } from '../errors/errors.js';
import { BETA_SCHEDULES, type SchedulerConfig } from '../model-folder/model-folder.js';
import { computeNoiseSchedule, type BetaScheduleName } from './noise-schedule.js';

/** LCM's σ_data in the consistency-model boundary condition (fixed in diffusers, not configurable). */
const SIGMA_DATA = 0.5;

/** Options of {@link LcmSchedule.timesteps}. */
export interface LcmTimestepOptions {
  /** How many timesteps to take from the LCM grid: an integer from 1 to `originalInferenceSteps × strength`. */
  readonly numInferenceSteps: number;
  /**
   * img2img strength in (0, 1]: only the noisiest `⌊originalInferenceSteps × strength⌋` points of
   * the grid count as its start (diffusers' `set_timesteps(..., strength)`). Default 1.
   */
  readonly strength?: number;
}

/** Options of {@link LcmSchedule.streamConstants}. */
export interface LcmStreamOptions {
  /** Length of the full LCM schedule the slots index into (StreamDiffusion's `num_inference_steps`, usually 50). */
  readonly numInferenceSteps: number;
  /**
   * StreamDiffusion's `t_index_list`: for each denoising slot, an index into the full schedule.
   * Integers in `[0, numInferenceSteps)`, strictly increasing (slot 0 is the noisiest).
   */
  readonly tIndexList: readonly number[];
}

/** The LCM boundary-condition scalings of one timestep: x̂0 = c_out·F + c_skip·x. */
export interface LcmBoundaryScalings {
  readonly cSkip: number;
  readonly cOut: number;
}

/** Per-slot constants of a StreamDiffusion stream batch, one entry per `tIndexList` entry (float32 values). */
export interface LcmStreamConstants {
  /** The UNet timestep of each slot: `timesteps[tIndexList[slot]]`. */
  readonly timesteps: readonly number[];
  /** √ᾱ_t per slot. */
  readonly alpha: Float32Array;
  /** √(1 − ᾱ_t) per slot. */
  readonly beta: Float32Array;
  /** c_skip = σ²/((s·t)² + σ²) per slot (σ = 0.5, s = `timestep_scaling`). */
  readonly cSkip: Float32Array;
  /** c_out = s·t/√((s·t)² + σ²) per slot. */
  readonly cOut: Float32Array;
}

/**
 * The LCM noise schedule of a model, as diffusers' `LCMScheduler` computes it. Every value is the
 * float32 the Python scheduler produces on the CPU (same roundings, same order of operations), so
 * a stream gets StreamDiffusion's constants. One exception: square roots here are correctly
 * rounded, while torch's x86 builds take float32 sqrt from MKL, which returns the other neighbour
 * of the exact root about one time in five; so α, β and c_out can differ from a given PyTorch run
 * by an ulp or two (≤ 1.2e-7), and the betas of a zero-SNR-rescaled config by a few 1e-6.
 */
export interface LcmSchedule {
  /** Training timesteps (`num_train_timesteps`); timesteps run from 0 to this minus one. */
  readonly numTrainTimesteps: number;
  /** Length of the grid the model was distilled on (`original_inference_steps`, default 50). */
  readonly originalInferenceSteps: number;
  /** Factor on t in the boundary condition (`timestep_scaling`, default 10). */
  readonly timestepScaling: number;
  /** β per training timestep. This schedule's own copy: changing it changes nothing else. */
  readonly betas: Float32Array;
  /** ᾱ_t = ∏_{s≤t}(1 − β_s) per training timestep. This schedule's own copy. */
  readonly alphasCumprod: Float32Array;
  /** ᾱ after the last step: 1 with `set_alpha_to_one` (the default), else ᾱ_0. LCM stepping never reaches it. */
  readonly finalAlphaCumprod: number;
  /**
   * The inference timesteps, noisiest first, as `LCMScheduler.set_timesteps` picks them: the grid
   * t = k·j − 1 (k = ⌊numTrainTimesteps / originalInferenceSteps⌋, j = 1 … ⌊originalInferenceSteps × strength⌋),
   * reversed, sampled at the indices ⌊i·len/numInferenceSteps⌋ (diffusers ≥ 0.24; older releases
   * took every ⌊len/numInferenceSteps⌋-th point, which differs when it does not divide evenly).
   *
   * @throws {InvalidArgumentError} `numInferenceSteps` or `strength` out of range.
   */
  timesteps(options: LcmTimestepOptions): number[];
  /**
   * c_skip and c_out of one timestep, as `get_scalings_for_boundary_condition_discrete` computes
   * them for a timestep taken from the scheduler's timestep tensor (float32 arithmetic).
   *
   * @throws {InvalidArgumentError} `timestep` is not an integer in `[0, numTrainTimesteps)`.
   */
  boundaryScalings(timestep: number): LcmBoundaryScalings;
  /**
   * StreamDiffusion's per-slot constants (its `prepare()`): the sub-timesteps picked by
   * `tIndexList` from the `numInferenceSteps`-step schedule, and α, β, c_skip, c_out for each.
   *
   * @throws {InvalidArgumentError} `numInferenceSteps` out of range, or `tIndexList` empty, not
   * strictly increasing, or with an entry outside `[0, numInferenceSteps)`.
   */
  streamConstants(options: LcmStreamOptions): LcmStreamConstants;
}

/**
 * Builds the LCM schedule of a model from its parsed `scheduler/scheduler_config.json`. Reads the
 * schedule keys of {@link SchedulerConfig} plus the LCM keys diffusers' `LCMScheduler` knows
 * (`timestep_scaling`, `set_alpha_to_one`, `rescale_betas_zero_snr`; their defaults otherwise).
 * `timestep_spacing` and `steps_offset` are ignored, as `LCMScheduler` ignores them. Works for a
 * checkpoint's own non-LCM config too (StreamDiffusion builds its scheduler with
 * `LCMScheduler.from_config(pipe.scheduler.config)`).
 *
 * @throws {InvalidArgumentError} naming the config key (`config.beta_schedule`,
 * `config.trained_betas`, `config.original_inference_steps`, …) that holds a value LCM cannot use.
 */
export function createLcmSchedule(config: SchedulerConfig): LcmSchedule {
  const settings = readLcmSettings(config);
  const { numTrainTimesteps, originalInferenceSteps, timestepScaling } = settings;
  const { betas, alphasCumprod } = computeNoiseSchedule(settings);
  const finalAlphaCumprod = settings.setAlphaToOne ? 1 : alphasCumprod[0]!;
  // The boundary condition multiplies an int64 timestep tensor by the Python float: torch turns
  // both into float32 first.
  const scaling = Math.fround(timestepScaling);

  const timesteps = ({ numInferenceSteps, strength = 1 }: LcmTimestepOptions): number[] => {
    if (typeof strength !== 'number' || !(strength > 0 && strength <= 1) || originalInferenceSteps * strength < 1) {
      throw new InvalidArgumentError({
        field: 'strength',
        value: strength,
        expected: `a number in (0, 1] with original_inference_steps (${originalInferenceSteps}) × strength ≥ 1`,
      });
    }
    // Python: int(original_steps * strength), a truncation of the double product (0.58 × 50 → 28).
    const gridLength = Math.trunc(originalInferenceSteps * strength);
    checkStepCount(numInferenceSteps, gridLength, `original_inference_steps ${originalInferenceSteps}${strength === 1 ? '' : ` × strength ${strength}`}`);
    const skip = Math.floor(numTrainTimesteps / originalInferenceSteps);
    // numpy: floor(arange(n) * (len / n)), the product in double.
    const spacing = gridLength / numInferenceSteps;
    return Array.from({ length: numInferenceSteps }, (_, index) => (gridLength - Math.floor(index * spacing)) * skip - 1);
  };

  const scalingsOf = (timestep: number): LcmBoundaryScalings => {
    const scaled = Math.fround(Math.fround(timestep) * scaling);
    const denominator = Math.fround(Math.fround(scaled * scaled) + SIGMA_DATA ** 2);
    return {
      // Python's `0.25 / tensor` is `tensor.reciprocal() * 0.25` in torch.
      cSkip: Math.fround(Math.fround(1 / denominator) * SIGMA_DATA ** 2),
      cOut: Math.fround(scaled / Math.fround(Math.sqrt(denominator))),
    };
  };

  const boundaryScalings = (timestep: number): LcmBoundaryScalings => {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= numTrainTimesteps) {
      throw new InvalidArgumentError({ field: 'timestep', value: timestep, expected: `an integer from 0 to ${numTrainTimesteps - 1}` });
    }
    return scalingsOf(timestep);
  };

  const streamConstants = ({ numInferenceSteps, tIndexList }: LcmStreamOptions): LcmStreamConstants => {
    checkStepCount(numInferenceSteps, originalInferenceSteps, `original_inference_steps ${originalInferenceSteps}`);
    checkTIndexList(tIndexList, numInferenceSteps);
    const schedule = timesteps({ numInferenceSteps });
    const slots = tIndexList.map((index) => schedule[index]!);
    const alpha = new Float32Array(slots.length);
    const beta = new Float32Array(slots.length);
    const cSkip = new Float32Array(slots.length);
    const cOut = new Float32Array(slots.length);
    for (const [slot, timestep] of slots.entries()) {
      const alphaProduct = alphasCumprod[timestep]!;
      alpha[slot] = Math.sqrt(alphaProduct);
      beta[slot] = Math.sqrt(Math.fround(1 - alphaProduct));
      const scalings = scalingsOf(timestep);
      cSkip[slot] = scalings.cSkip;
      cOut[slot] = scalings.cOut;
    }
    return { timesteps: slots, alpha, beta, cSkip, cOut };
  };

  return Object.freeze({
    numTrainTimesteps,
    originalInferenceSteps,
    timestepScaling,
    betas: betas.slice(),
    alphasCumprod: alphasCumprod.slice(),
    finalAlphaCumprod,
    timesteps,
    boundaryScalings,
    streamConstants,
  });
}

interface LcmSettings {
  readonly numTrainTimesteps: number;
  readonly betaSchedule: BetaScheduleName;
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly trainedBetas: readonly number[] | undefined;
  readonly rescaleBetasZeroSnr: boolean;
  readonly originalInferenceSteps: number;
  readonly timestepScaling: number;
  readonly setAlphaToOne: boolean;
}

/** The config keys LCM uses, checked once here; LCMScheduler's defaults where a key is absent. */
function readLcmSettings(config: SchedulerConfig): LcmSettings {
  const numTrainTimesteps = config.num_train_timesteps;
  if (!Number.isInteger(numTrainTimesteps) || numTrainTimesteps < 1) {
    throw new InvalidArgumentError({ field: 'config.num_train_timesteps', value: numTrainTimesteps, expected: 'a positive integer' });
  }
  const trainedBetas = config.trained_betas ?? undefined;
  if (trainedBetas !== undefined) {
    // diffusers would size everything by the list and then index it with timesteps derived from
    // num_train_timesteps; a mismatch only fails later, so refuse it here.
    if (trainedBetas.length !== numTrainTimesteps || !trainedBetas.every((beta) => Number.isFinite(beta) && beta >= 0 && beta <= 1)) {
      throw new InvalidArgumentError({
        field: 'config.trained_betas',
        value: `${trainedBetas.length} values`,
        expected: `${numTrainTimesteps} betas (num_train_timesteps), each in [0, 1]`,
      });
    }
  }
  const betaSchedule = config.beta_schedule;
  // readModelFolder already refuses unknown schedules; configs can also come from elsewhere.
  if (trainedBetas === undefined && !isBetaSchedule(betaSchedule)) {
    throw new InvalidArgumentError({ field: 'config.beta_schedule', value: betaSchedule, expected: `one of ${BETA_SCHEDULES.join(', ')}` });
  }
  const originalInferenceSteps = config.original_inference_steps ?? 50;
  if (!Number.isInteger(originalInferenceSteps) || originalInferenceSteps < 1 || originalInferenceSteps > numTrainTimesteps) {
    throw new InvalidArgumentError({
      field: 'config.original_inference_steps',
      value: originalInferenceSteps,
      expected: `an integer from 1 to num_train_timesteps (${numTrainTimesteps})`,
    });
  }
  const timestepScaling = undeclaredKey(config, 'timestep_scaling') ?? 10;
  if (typeof timestepScaling !== 'number' || !Number.isFinite(timestepScaling) || timestepScaling <= 0) {
    throw new InvalidArgumentError({ field: 'config.timestep_scaling', value: timestepScaling, expected: 'a positive number' });
  }
  const setAlphaToOne = booleanKey(config, 'set_alpha_to_one', true);
  const rescaleBetasZeroSnr = booleanKey(config, 'rescale_betas_zero_snr', false);
  return {
    numTrainTimesteps,
    betaSchedule: isBetaSchedule(betaSchedule) ? betaSchedule : 'scaled_linear',
    betaStart: config.beta_start,
    betaEnd: config.beta_end,
    trainedBetas,
    rescaleBetasZeroSnr,
    originalInferenceSteps,
    timestepScaling,
    setAlphaToOne,
  };
}

function isBetaSchedule(name: string): name is BetaScheduleName {
  return (BETA_SCHEDULES as readonly string[]).includes(name);
}

/** A key the config schema does not declare but keeps (LCM-only keys); null counts as absent, as in diffusers. */
function undeclaredKey(config: SchedulerConfig, key: string): unknown {
  return config[key] ?? undefined;
}

function booleanKey(config: SchedulerConfig, key: string, fallback: boolean): boolean {
  const value = undeclaredKey(config, key) ?? fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError({ field: `config.${key}`, value, expected: 'true or false' });
  return value;
}

/** `gridLength` is the number of points of the LCM grid, `grid` says where that number comes from. */
function checkStepCount(numInferenceSteps: number, gridLength: number, grid: string): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > gridLength) {
    throw new InvalidArgumentError({
      field: 'numInferenceSteps',
      value: numInferenceSteps,
      expected: `an integer from 1 to ${gridLength} (the points of the LCM grid: ${grid})`,
    });
  }
}

function checkTIndexList(tIndexList: readonly number[], numInferenceSteps: number): void {
  // Checked as unknown: JavaScript callers and config files can hand over anything.
  const candidate: unknown = tIndexList;
  if (!Array.isArray(candidate) || candidate.length === 0) {
    throw new InvalidArgumentError({ field: 'tIndexList', value: tIndexList, expected: 'a non-empty list of step indices' });
  }
  for (const [position, index] of tIndexList.entries()) {
    if (!Number.isInteger(index) || index < 0 || index >= numInferenceSteps) {
      throw new InvalidArgumentError({
        field: `tIndexList[${position}]`,
        value: index,
        expected: `an integer from 0 to ${numInferenceSteps - 1} (numInferenceSteps ${numInferenceSteps})`,
      });
    }
    const previous = tIndexList[position - 1];
    // Each slot's output is re-noised to the next slot's level: a slot must be less noisy than the one before.
    if (previous !== undefined && index <= previous) {
      throw new InvalidArgumentError({ field: `tIndexList[${position}]`, value: index, expected: `an index greater than the previous one (${previous})` });
    }
  }
}
