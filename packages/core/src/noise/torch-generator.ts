// PyTorch's CPU `torch.Generator` and `torch.randn`, reproduced so that a seed gives the same
// float32 noise in Node.js as `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`
// does in Python on an x86-64 CPU. What torch does (sources in aten/src/ATen/):
//
// - core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp: one mt19937 seeded with the low 32 bits of the
//   64-bit seed; `random()` is one draw, `random64()` two (first draw = high word).
// - core/TransformationHelper.h: a float uniform is the low 24 bits of `random()` times 2^-24; a
//   double uniform is the low 53 bits of `random64()` times 2^-53.
// - native/cpu/DistributionTemplates.h, `normal_kernel`: a contiguous tensor of 16 or more
//   elements is filled with float uniforms, then transformed 16 at a time (see normal-fill-avx2.ts);
//   when the size is not a multiple of 16 the LAST 16 elements get fresh uniforms and are
//   transformed again, overlapping the previous block. Smaller tensors draw one element at a time
//   from `normal_distribution<double>` (core/DistributionsHelper.h): Box-Muller in double with
//   libm, whose second sample is cached on the generator and returned by the next such draw, even
//   in a later call. The 16-element path neither reads nor clears that cache.

import { InvalidArgumentError } from '../errors/errors.js';
import { Mt19937 } from './mt19937.js';
import { normalFill16 } from './normal-fill-avx2.js';

/** torch takes the vectorised path from this many elements on. */
const VECTOR_PATH_MIN_ELEMENTS = 16;
const FLOAT_UNIFORM_MASK = 0xffffff;
const FLOAT_UNIFORM_SCALE = 2 ** -24;
const DOUBLE_UNIFORM_HIGH_MASK = 0x1fffff;
const DOUBLE_UNIFORM_SCALE = 2 ** -53;
const TWO_POW_32 = 2 ** 32;
/** `torch.Generator.manual_seed` accepts int64 and uint64 values; anything else overflows. */
const SEED_MIN = -(2n ** 63n);
const SEED_MAX = 2n ** 64n - 1n;
/** The most elements one call may ask for (16 GiB of float32): far above any latent, an explicit error past it. */
const MAX_ELEMENTS = 2 ** 32 - 1;

/**
 * A seeded stream of normal noise that continues like successive `torch.randn(shape,
 * generator=g)` calls on one CPU `torch.Generator` `g`, bit for bit as the x86-64 Linux wheels
 * compute it (`torchRandn` says where torch itself differs). Each `randn` call advances the stream.
 */
export interface TorchGenerator {
  /** The seed as `g.initial_seed()` reports it: the 64-bit unsigned value (negative seeds wrap). */
  readonly initialSeed: bigint;
  /**
   * The next `torch.randn(shape, dtype=torch.float32)`: standard normal samples in row-major
   * (C) order, `shape`'s product of them (1 for `[]`, none when a dimension is 0).
   */
  randn(shape: readonly number[]): Float32Array;
  /** An independent copy in the same state (`g.clone_state()`): both continue identically. */
  clone(): TorchGenerator;
}

/**
 * Creates the equivalent of `torch.Generator().manual_seed(seed)` on the CPU. `seed` is an
 * integer in [-2^63, 2^64 - 1] (a `number` must be a safe integer); like torch, only its low
 * 32 bits choose the stream, so `seed` and `seed + 2^32` give the same noise.
 * @throws {InvalidArgumentError} when `seed` is not such an integer.
 */
export function createTorchGenerator(seed: number | bigint): TorchGenerator {
  const initialSeed = BigInt.asUintN(64, validateSeed(seed));
  return new CpuTorchGenerator(initialSeed, new Mt19937(Number(initialSeed & 0xffffffffn)), undefined);
}

class CpuTorchGenerator implements TorchGenerator {
  readonly initialSeed: bigint;
  private readonly engine: Mt19937;
  /** `next_double_normal_sample_`: the sine half of the last double Box-Muller pair, if unused. */
  private cachedNormal: number | undefined;

  constructor(initialSeed: bigint, engine: Mt19937, cachedNormal: number | undefined) {
    this.initialSeed = initialSeed;
    this.engine = engine;
    this.cachedNormal = cachedNormal;
  }

  randn(shape: readonly number[]): Float32Array {
    const output = new Float32Array(elementCount(shape));
    if (output.length >= VECTOR_PATH_MIN_ELEMENTS) this.fillVectorPath(output);
    else for (let index = 0; index < output.length; index += 1) output[index] = this.nextSerialNormal();
    return output;
  }

  clone(): TorchGenerator {
    return new CpuTorchGenerator(this.initialSeed, this.engine.clone(), this.cachedNormal);
  }

  /** `normal_fill`: uniforms everywhere, Box-Muller per 16, the ragged tail redone on fresh uniforms. */
  private fillVectorPath(data: Float32Array): void {
    const size = data.length;
    for (let index = 0; index < size; index += 1) data[index] = this.nextFloatUniform();
    for (let offset = 0; offset + VECTOR_PATH_MIN_ELEMENTS <= size; offset += VECTOR_PATH_MIN_ELEMENTS) {
      normalFill16(data, offset);
    }
    if (size % VECTOR_PATH_MIN_ELEMENTS !== 0) {
      const offset = size - VECTOR_PATH_MIN_ELEMENTS;
      for (let lane = 0; lane < VECTOR_PATH_MIN_ELEMENTS; lane += 1) data[offset + lane] = this.nextFloatUniform();
      normalFill16(data, offset);
    }
  }

  /**
   * One `normal_distribution<double>(0, 1)` draw cast to float. Uses the engine's libm calls:
   * V8's `Math.log1p` is fdlibm's, as glibc's is; `Math.sin`/`Math.cos` differ from glibc's by at
   * most an ulp of a double, far below the float rounding of the result.
   */
  private nextSerialNormal(): number {
    const cached = this.cachedNormal;
    if (cached !== undefined) {
      this.cachedNormal = undefined;
      // `val * std + mean` with std 1 and mean 0: exact, but turns -0 into +0, as `+ 0` does.
      return Math.fround(cached + 0);
    }
    const angleUniform = this.nextDoubleUniform();
    const radiusUniform = this.nextDoubleUniform();
    const radius = Math.sqrt(-2 * Math.log1p(-radiusUniform));
    const theta = 2 * Math.PI * angleUniform;
    this.cachedNormal = radius * Math.sin(theta);
    return Math.fround(radius * Math.cos(theta) + 0);
  }

  private nextFloatUniform(): number {
    return (this.engine.nextUint32() & FLOAT_UNIFORM_MASK) * FLOAT_UNIFORM_SCALE;
  }

  private nextDoubleUniform(): number {
    const high = this.engine.nextUint32() & DOUBLE_UNIFORM_HIGH_MASK;
    const low = this.engine.nextUint32();
    return (high * TWO_POW_32 + low) * DOUBLE_UNIFORM_SCALE;
  }
}

function validateSeed(seed: number | bigint): bigint {
  if (typeof seed === 'number') {
    if (Number.isSafeInteger(seed)) return BigInt(seed);
  } else if (typeof seed === 'bigint' && seed >= SEED_MIN && seed <= SEED_MAX) {
    return seed;
  }
  throw new InvalidArgumentError({
    field: 'seed',
    value: typeof seed === 'bigint' ? `${seed}n` : seed,
    expected: 'a safe integer number or a bigint in [-2^63, 2^64 - 1]',
  });
}

function elementCount(shape: readonly number[]): number {
  // Checked without `Array.isArray` narrowing, which turns a readonly array into `any[]`.
  const isList: boolean = Array.isArray(shape);
  if (!isList || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
    throw new InvalidArgumentError({ field: 'shape', value: shape, expected: 'an array of non-negative integers' });
  }
  const count = shape.reduce((product, size) => product * size, 1);
  if (count > MAX_ELEMENTS) {
    throw new InvalidArgumentError({ field: 'shape', value: shape, expected: `at most ${MAX_ELEMENTS} elements` });
  }
  return count;
}
