import { afterAll, describe, expect, it } from 'vitest';
import { decodeGolden, readGoldenJson } from '../../test-support/goldens.js';
import { InvalidArgumentError } from '../errors/errors.js';
import { schedulerConfigSchema, type SchedulerConfig } from '../model-folder/model-folder.js';
import { fmaFloat32 } from '../math/float32-fma.js';
import { createLcmSchedule, type LcmSchedule, type LcmStreamConstants } from './lcm-schedule.js';

// Goldens from diffusers' LCMScheduler (fixtures/goldens/lcm-scheduler.json.gz, gzip-compressed JSON, made by
// `python3 -m streamdiffusion_export scheduler-goldens`; see tools/export). Timesteps, betas, ᾱ
// and c_skip must match exactly: the schedule reproduces torch's float32 roundings. Values that go
// through a square root may not: torch's x86 builds take float32 sqrt from MKL's vector library,
// which is not correctly rounded (about one result in five is the other neighbour of the exact
// root; measured on torch 2.13 CPU), while we round the exact root. So α and β may be one ulp off,
// c_out (a quotient by a root) two; the zero-SNR rescale, which takes roots of ᾱ on the way to its
// betas, gets bounds measured for that sensitivity (see the bounds below). For a few configs the
// goldens also hold diffusers' numbers with a correctly rounded sqrt: those must match exactly.

interface PerTimestep {
  readonly timesteps: number[];
  readonly alpha: number[];
  readonly beta: number[];
  readonly c_skip: number[];
  readonly c_out: number[];
}

interface GoldenCase {
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly resolved: { original_inference_steps: number; num_train_timesteps: number; timestep_scaling: number };
  readonly betas: { dtype: string; dims: number[]; data: string };
  readonly alphas_cumprod: { dtype: string; dims: number[]; data: string };
  readonly final_alpha_cumprod: number;
  readonly schedules: (PerTimestep & { num_inference_steps: number; strength: number })[];
  readonly stream: (PerTimestep & { num_inference_steps: number; t_index_list: number[] })[];
  readonly rejected: { num_inference_steps: number; strength: number; diffusers_error: string }[];
  /** The same diffusers code with torch's float32 sqrt swapped for a correctly rounded one (some configs). */
  readonly correctly_rounded_sqrt?: {
    readonly betas: { dtype: string; dims: number[]; data: string };
    readonly alphas_cumprod: { dtype: string; dims: number[]; data: string };
    readonly schedule: PerTimestep & { num_inference_steps: number };
  };
}

const goldens = (await readGoldenJson('lcm-scheduler.json.gz')) as { cases: GoldenCase[] };

const float32 = new Float32Array(1);
const float32Bits = new Int32Array(float32.buffer);

/** How many float32 values lie between two float32 values (0 when equal). */
function ulpDistance(a: number, b: number): number {
  const ordered = (value: number): number => {
    float32[0] = value;
    const bits = float32Bits[0]!;
    return bits < 0 ? -(bits & 0x7fffffff) : bits;
  };
  return Math.abs(ordered(a) - ordered(b));
}

/** The largest differences seen per kind of value, printed after the run (the numbers the README quotes). */
const largest = new Map<string, { ulps: number; absolute: number; relative: number }>();

/** How far a value may be from the golden: within any one of these passes. Absent: exact. */
interface Bound {
  readonly ulps?: number;
  readonly relative?: number;
  readonly absolute?: number;
}

/** One MKL sqrt difference: one ulp on a root, two on c_out = s·t / root (a relative 2^-23 near 1 is 2 ulps). */
const ONE_ROOT: Bound = { ulps: 1 };
const QUOTIENT_BY_ROOT: Bound = { ulps: 2 };
/**
 * Zero-SNR rescale: √ᾱ is shifted to end at 0 and squared back, so near the last timestep (ᾱ ~ 2e-5)
 * a one-ulp root difference is a few 1e-6 of ᾱ and of the betas; torch itself gives these
 * differences when its sqrt is swapped for a correctly rounded one (measured: betas 2.9e-6
 * absolute, ᾱ 3.8e-6 relative).
 */
const ZERO_SNR: Bound = { absolute: 5e-6, relative: 1e-5 };

/**
 * Elements further from the golden than the bound allows, as "index: actual vs expected", at most
 * five. Every comparison also feeds the largest-difference report printed after the run.
 */
function mismatches(kind: string, actual: ArrayLike<number>, expected: ArrayLike<number>, bound: Bound = {}): string[] {
  if (actual.length !== expected.length) return [`length ${actual.length} vs ${expected.length}`];
  const found: string[] = [];
  const seen = largest.get(kind) ?? { ulps: 0, absolute: 0, relative: 0 };
  for (let index = 0; index < actual.length; index += 1) {
    const [got, want] = [actual[index]!, expected[index]!];
    const ulps = ulpDistance(got, want);
    const absolute = Math.abs(got - want);
    const relative = want === 0 ? absolute : absolute / Math.abs(want);
    seen.ulps = Math.max(seen.ulps, ulps);
    seen.absolute = Math.max(seen.absolute, absolute);
    seen.relative = Math.max(seen.relative, relative);
    const within = ulps <= (bound.ulps ?? 0) || relative <= (bound.relative ?? -1) || absolute <= (bound.absolute ?? -1);
    if (!within && found.length < 5) found.push(`${index}: ${got} vs ${want} (${ulps} ulp)`);
  }
  largest.set(kind, seen);
  return found;
}

afterAll(() => {
  const lines = [...largest].map(([kind, { ulps, absolute, relative }]) => `  ${kind}: ${ulps} ulp, ${absolute.toExponential(2)} abs, ${relative.toExponential(2)} rel`);
  console.log(`largest differences from diffusers:\n${lines.join('\n')}`);
});

function scheduleOf(config: Record<string, unknown>): LcmSchedule {
  // Parsed as readModelFolder parses scheduler_config.json (defaults filled in, unknown keys kept).
  return createLcmSchedule(schedulerConfigSchema.parse(config));
}

function invalidArgument(run: () => unknown): InvalidArgumentError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return error as InvalidArgumentError;
  }
  throw new Error('expected an InvalidArgumentError, nothing was thrown');
}

/** α, β, c_skip and c_out of a golden, within the bounds above. */
function expectSlotConstants(name: string, constants: LcmStreamConstants, expected: PerTimestep): void {
  // α and β of the zero-SNR schedule inherit ᾱ's bound (the last timestep's α is 0 there).
  const rescaled = name === 'rescale-zero-snr';
  expect(mismatches(rescaled ? 'α (zero-SNR)' : 'α = √ᾱ', constants.alpha, expected.alpha, rescaled ? ZERO_SNR : ONE_ROOT)).toEqual([]);
  expect(mismatches(rescaled ? 'β (zero-SNR)' : 'β = √(1 − ᾱ)', constants.beta, expected.beta, rescaled ? ZERO_SNR : ONE_ROOT)).toEqual([]);
  expect(mismatches('c_skip', constants.cSkip, expected.c_skip)).toEqual([]);
  expect(mismatches('c_out', constants.cOut, expected.c_out, QUOTIENT_BY_ROOT)).toEqual([]);
}

const sd15 = goldens.cases.find((golden) => golden.name === 'sd15')!.config;

describe('createLcmSchedule matches diffusers LCMScheduler exactly', () => {
  it('has goldens for every kind of config', () => {
    expect(goldens.cases.map((golden) => golden.name)).toEqual(
      expect.arrayContaining(['sd15', 'sd-turbo', 'linear', 'squaredcos-cap-v2', 'train100-original25', 'trained-betas', 'rescale-zero-snr']),
    );
  });

  for (const golden of goldens.cases.filter((candidate) => candidate.name !== 'original-exceeds-train')) {
    describe(golden.name, () => {
      const schedule = scheduleOf(golden.config);

      it('betas, alphas_cumprod and final_alpha_cumprod', () => {
        expect(schedule.numTrainTimesteps).toBe(golden.resolved.num_train_timesteps);
        expect(schedule.originalInferenceSteps).toBe(golden.resolved.original_inference_steps);
        expect(schedule.timestepScaling).toBe(golden.resolved.timestep_scaling);
        const rescaled = golden.name === 'rescale-zero-snr';
        const betas = decodeGolden(golden.betas).data as Float32Array;
        const alphasCumprod = decodeGolden(golden.alphas_cumprod).data as Float32Array;
        expect(mismatches(rescaled ? 'betas (zero-SNR)' : 'betas', schedule.betas, betas, rescaled ? ZERO_SNR : {})).toEqual([]);
        expect(mismatches(rescaled ? 'ᾱ (zero-SNR)' : 'ᾱ', schedule.alphasCumprod, alphasCumprod, rescaled ? ZERO_SNR : {})).toEqual([]);
        expect(schedule.finalAlphaCumprod).toBe(golden.final_alpha_cumprod);
      });

      for (const expected of golden.schedules) {
        const { num_inference_steps: numInferenceSteps, strength } = expected;
        it(`set_timesteps(${numInferenceSteps}, strength=${strength}): timesteps, α, β, c_skip, c_out`, () => {
          const timesteps = schedule.timesteps({ numInferenceSteps, strength });
          expect(timesteps).toEqual(expected.timesteps);
          const scalings = timesteps.map((timestep) => schedule.boundaryScalings(timestep));
          expect(mismatches('c_skip', scalings.map((scaling) => scaling.cSkip), expected.c_skip)).toEqual([]);
          expect(mismatches('c_out', scalings.map((scaling) => scaling.cOut), expected.c_out, QUOTIENT_BY_ROOT)).toEqual([]);
          if (strength === 1) {
            // Every step as a slot: the per-slot constants of the whole schedule.
            const constants = schedule.streamConstants({ numInferenceSteps, tIndexList: timesteps.map((_, index) => index) });
            expect(constants.timesteps).toEqual(expected.timesteps);
            expectSlotConstants(golden.name, constants, expected);
          }
        });
      }

      for (const expected of golden.stream) {
        it(`StreamDiffusion t_index_list ${JSON.stringify(expected.t_index_list)} of ${expected.num_inference_steps} steps`, () => {
          const constants = schedule.streamConstants({ numInferenceSteps: expected.num_inference_steps, tIndexList: expected.t_index_list });
          expect(constants.timesteps).toEqual(expected.timesteps);
          expectSlotConstants(golden.name, constants, expected);
        });
      }

      const exact = golden.correctly_rounded_sqrt;
      if (exact) {
        it(`bit for bit with a correctly rounded sqrt: betas, ᾱ and ${exact.schedule.num_inference_steps} steps`, () => {
          expect(mismatches('exact-sqrt betas', schedule.betas, decodeGolden(exact.betas).data as Float32Array)).toEqual([]);
          expect(mismatches('exact-sqrt ᾱ', schedule.alphasCumprod, decodeGolden(exact.alphas_cumprod).data as Float32Array)).toEqual([]);
          const { num_inference_steps: numInferenceSteps } = exact.schedule;
          const constants = schedule.streamConstants({ numInferenceSteps, tIndexList: Array.from({ length: numInferenceSteps }, (_, index) => index) });
          expect(constants.timesteps).toEqual(exact.schedule.timesteps);
          expect(mismatches('exact-sqrt α', constants.alpha, exact.schedule.alpha)).toEqual([]);
          expect(mismatches('exact-sqrt β', constants.beta, exact.schedule.beta)).toEqual([]);
          expect(mismatches('exact-sqrt c_skip', constants.cSkip, exact.schedule.c_skip)).toEqual([]);
          expect(mismatches('exact-sqrt c_out', constants.cOut, exact.schedule.c_out)).toEqual([]);
        });
      }

      for (const rejected of golden.rejected) {
        it(`refuses ${rejected.num_inference_steps} steps at strength ${rejected.strength}, as diffusers does`, () => {
          const error = invalidArgument(() => schedule.timesteps({ numInferenceSteps: rejected.num_inference_steps, strength: rejected.strength }));
          expect(['numInferenceSteps', 'strength']).toContain(error.field);
        });
      }
    });
  }

  it('refuses original_inference_steps above num_train_timesteps when created (diffusers only at set_timesteps)', () => {
    const golden = goldens.cases.find((candidate) => candidate.name === 'original-exceeds-train')!;
    expect(golden.rejected).toHaveLength(1);
    const error = invalidArgument(() => scheduleOf(golden.config));
    expect(error.field).toBe('config.original_inference_steps');
    expect(error.message).toBe('config.original_inference_steps: expected an integer from 1 to num_train_timesteps (40), got 50');
  });
});

describe('LCM schedule facts', () => {
  it('50 steps of SD 1.5 are 999, 979, …, 19 and StreamDiffusion [32, 45] are 359 and 99', () => {
    const schedule = scheduleOf(sd15);
    expect(schedule.timesteps({ numInferenceSteps: 50 })).toEqual(Array.from({ length: 50 }, (_, index) => 999 - 20 * index));
    expect(schedule.streamConstants({ numInferenceSteps: 50, tIndexList: [32, 45] }).timesteps).toEqual([359, 99]);
  });

  it('picks evenly spaced grid points when the count does not divide the grid (diffusers ≥ 0.24)', () => {
    // The pre-0.24 selection (every 16th point) gave 999, 679, 359.
    expect(scheduleOf(sd15).timesteps({ numInferenceSteps: 3 })).toEqual([999, 679, 339]);
  });

  it('c_skip and c_out follow the boundary condition formula within float32 rounding', () => {
    const schedule = scheduleOf({ ...sd15, timestep_scaling: 10 });
    for (const timestep of [0, 1, 19, 259, 999]) {
      const scaled = 10 * timestep;
      const { cSkip, cOut } = schedule.boundaryScalings(timestep);
      expect(cSkip).toBeCloseTo(0.25 / (scaled ** 2 + 0.25), 7);
      expect(cOut).toBeCloseTo(scaled / Math.sqrt(scaled ** 2 + 0.25), 7);
    }
    expect(schedule.boundaryScalings(0)).toEqual({ cSkip: 1, cOut: 0 });
  });

  it('keeps its own copies of the arrays it exposes', () => {
    const schedule = scheduleOf(sd15);
    const before = schedule.streamConstants({ numInferenceSteps: 50, tIndexList: [0] }).alpha[0];
    schedule.alphasCumprod.fill(0);
    expect(schedule.streamConstants({ numInferenceSteps: 50, tIndexList: [0] }).alpha[0]).toBe(before);
  });
});

describe('LCM schedule validation', () => {
  const schedule = scheduleOf(sd15);

  it.each([
    [[], 'tIndexList', 'expected a non-empty list of step indices'],
    [[50], 'tIndexList[0]', 'expected an integer from 0 to 49 (numInferenceSteps 50), got 50'],
    [[0, -1], 'tIndexList[1]', 'expected an integer from 0 to 49 (numInferenceSteps 50), got -1'],
    [[0, 1.5], 'tIndexList[1]', 'got 1.5'],
    [[32, 32], 'tIndexList[1]', 'expected an index greater than the previous one (32), got 32'],
    [[45, 32], 'tIndexList[1]', 'expected an index greater than the previous one (45), got 32'],
  ])('t_index_list %j is refused, naming %s', (tIndexList, field, message) => {
    const error = invalidArgument(() => schedule.streamConstants({ numInferenceSteps: 50, tIndexList }));
    expect(error.field).toBe(field);
    expect(error.message).toContain(message);
  });

  it('checks t_index_list against the step count in use', () => {
    expect(schedule.streamConstants({ numInferenceSteps: 50, tIndexList: [32, 45] }).timesteps).toEqual([359, 99]);
    const error = invalidArgument(() => schedule.streamConstants({ numInferenceSteps: 4, tIndexList: [32, 45] }));
    expect(error.message).toBe('tIndexList[0]: expected an integer from 0 to 3 (numInferenceSteps 4), got 32');
  });

  it.each([0, -1, 2.5, 51, Number.NaN])('numInferenceSteps %s is refused', (numInferenceSteps) => {
    for (const run of [
      () => schedule.timesteps({ numInferenceSteps }),
      () => schedule.streamConstants({ numInferenceSteps, tIndexList: [0] }),
    ]) {
      const error = invalidArgument(run);
      expect(error.field).toBe('numInferenceSteps');
      expect(error.message).toContain('expected an integer from 1 to 50 (the points of the LCM grid: original_inference_steps 50)');
    }
  });

  it('bounds the step count by the strength-shortened grid', () => {
    const error = invalidArgument(() => schedule.timesteps({ numInferenceSteps: 8, strength: 0.1 }));
    expect(error.message).toBe(
      'numInferenceSteps: expected an integer from 1 to 5 (the points of the LCM grid: original_inference_steps 50 × strength 0.1), got 8',
    );
  });

  it.each([0, -0.5, 1.5, Number.NaN, 0.01])('strength %s is refused', (strength) => {
    const error = invalidArgument(() => schedule.timesteps({ numInferenceSteps: 1, strength }));
    expect(error.field).toBe('strength');
    expect(error.message).toContain('expected a number in (0, 1] with original_inference_steps (50) × strength ≥ 1');
  });

  it.each([-1, 1000, 0.5])('boundaryScalings refuses timestep %s', (timestep) => {
    expect(invalidArgument(() => schedule.boundaryScalings(timestep)).field).toBe('timestep');
  });

  const configErrors: [string, Record<string, unknown>, string][] = [
    ['config.beta_schedule', { beta_schedule: 'sigmoid' }, 'config.beta_schedule: expected one of linear, scaled_linear, squaredcos_cap_v2, got "sigmoid"'],
    ['config.trained_betas', { num_train_timesteps: 3, trained_betas: [0.1, 0.2] }, 'config.trained_betas: expected 3 betas (num_train_timesteps), each in [0, 1], got "2 values"'],
    ['config.trained_betas', { num_train_timesteps: 2, trained_betas: [0.1, 1.2] }, 'each in [0, 1]'],
    ['config.original_inference_steps', { original_inference_steps: 1001 }, 'expected an integer from 1 to num_train_timesteps (1000), got 1001'],
    ['config.timestep_scaling', { timestep_scaling: '10' }, 'config.timestep_scaling: expected a positive number, got "10"'],
    ['config.timestep_scaling', { timestep_scaling: 0 }, 'expected a positive number, got 0'],
    ['config.set_alpha_to_one', { set_alpha_to_one: 'yes' }, 'config.set_alpha_to_one: expected true or false, got "yes"'],
    ['config.rescale_betas_zero_snr', { rescale_betas_zero_snr: 1 }, 'expected true or false, got 1'],
  ];
  it.each(configErrors)('a bad %s is refused: %j', (field, overrides, message) => {
    const error = invalidArgument(() => scheduleOf({ ...sd15, ...overrides }));
    expect(error.field).toBe(field);
    expect(error.message).toContain(message);
  });

  it('ignores beta_schedule when trained_betas are given, as diffusers does', () => {
    const schedule = scheduleOf({ num_train_timesteps: 2, trained_betas: [0.25, 0.5], beta_schedule: 'sigmoid', original_inference_steps: 2 });
    expect(Array.from(schedule.alphasCumprod)).toEqual([0.75, 0.375]);
  });

  it('a config that skipped the schema gets the same guards (typed as SchedulerConfig by a cast)', () => {
    const config = { ...schedulerConfigSchema.parse({}), beta_schedule: 'laplace' } as SchedulerConfig;
    expect(invalidArgument(() => createLcmSchedule(config)).field).toBe('config.beta_schedule');
  });
});

describe('the fused multiply-add linspace relies on', () => {
  it('fuses a multiply-add: one rounding, not two', () => {
    // step·5 = 5 + 1.25 ulp: rounding it first drops the quarter, and adding start (a quarter ulp)
    // cannot bring it back; fused, 5 + 1.5 ulp ties to the even 5 + 2 ulp.
    const step = 1 + 2 ** -23;
    const start = 2 ** -23;
    const twice = Math.fround(start + Math.fround(step * 5));
    const fused = fmaFloat32(step, 5, start);
    expect(twice).toBe(5 + 2 ** -21);
    expect(fused).toBe(5 + 2 ** -20);
    expect(fused).not.toBe(twice);
  });
});
