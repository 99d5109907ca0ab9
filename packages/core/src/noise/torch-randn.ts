import { createTorchGenerator } from './torch-generator.js';

/**
 * `torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)` on
 * the CPU, bit for bit: a fresh generator's first draw (use {@link createTorchGenerator} to
 * continue a stream). Samples are in row-major (C) order.
 *
 * Matches the official x86-64 Linux wheels, whose kernel uses a polynomial log/sin/cos for 16 or
 * more elements (AVX2, also on AVX-512 CPUs). torch itself gives other last bits elsewhere: on ARM
 * (Apple silicon, Graviton) or with `ATEN_CPU_CAPABILITY=default` it calls libm's float functions
 * instead (measured: 62% of elements identical, the rest within 2.5e-6), and a build compiled
 * without FMA contraction rounds some steps twice. Fewer than 16 elements are drawn in double
 * precision through libm, so those should agree across platforms too.
 * @throws {InvalidArgumentError} for a seed outside [-2^63, 2^64 - 1] (a `number` must be a safe
 * integer) or a shape that is not a list of non-negative integers.
 */
export function torchRandn(shape: readonly number[], seed: number | bigint): Float32Array {
  return createTorchGenerator(seed).randn(shape);
}
