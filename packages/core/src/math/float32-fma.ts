// A float32 fused multiply-add, `Math.fround(a * b + c)` with one rounding instead of two.
// Shared by the torch-exact noise and the LCM schedule's linspace.
//
// torch's AVX2 kernels are compiled by GCC with FMA contraction, so `a * b + c` on floats is one
// `vfmadd` there: rounded once. In JavaScript, the product of two floats is exact in a double
// (24 + 24 significant bits <= 53), but the sum is rounded to a double and then again to a float.
// That double rounding differs from a single rounding only when the double sum lands exactly on a
// midpoint between two floats while the exact sum does not; then the rounding error of the double
// sum (an exact TwoSum term) says which way the single rounding goes.

const doubleScratch = new Float64Array(1);
const doubleWords = new Uint32Array(doubleScratch.buffer);
/** Index of the low 32 bits of a double in `doubleWords` (0 on every little-endian platform). */
const LOW_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;

const floatScratch = new Float32Array(1);
const floatBits = new Uint32Array(floatScratch.buffer);

/** 2^-126: below it floats are subnormal and their spacing is no longer 2^-23 of the value. */
const FLOAT_MIN_NORMAL = 2 ** -126;
/** The low 29 bits of a double's significand when it is halfway between two normal floats. */
const MIDPOINT_LOW_BITS = 0x10000000;
const LOW_29_BITS = 0x1fffffff;

/**
 * `a * b + c` rounded once to float32 (round to nearest, ties to even), as the x86 `vfmadd`
 * instructions compute it. `a`, `b` and `c` must be float32 values (e.g. from `Math.fround` or a
 * `Float32Array`); the result is too.
 */
export function fmaFloat32(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  doubleScratch[0] = sum;
  // Fast path: a normal-range double that is not a float midpoint rounds to the same float as the
  // exact sum does (a midpoint between the exact sum and its nearest double would be a nearer double).
  if ((doubleWords[LOW_WORD]! & LOW_29_BITS) !== MIDPOINT_LOW_BITS && Math.abs(sum) >= FLOAT_MIN_NORMAL) {
    return Math.fround(sum);
  }
  return roundExactSumToFloat32(product, c, sum);
}

/** Rounds the exact `product + addend` to float32, given `sum`, its value rounded to a double. */
function roundExactSumToFloat32(product: number, addend: number, sum: number): number {
  const rounded = Math.fround(sum);
  if (rounded === sum || !Number.isFinite(sum)) return rounded;
  // Knuth's TwoSum: the exact rounding error of `sum`.
  const addendPart = sum - product;
  const productPart = sum - addendPart;
  const error = product - productPart + (addend - addendPart);
  if (error === 0) return rounded;
  const other = rounded < sum ? nextFloat32Up(rounded) : nextFloat32Down(rounded);
  // Both differences are exact: the three values are within one float spacing of each other.
  if (Math.abs(sum - rounded) !== Math.abs(other - sum)) return rounded;
  return error > 0 ? Math.max(rounded, other) : Math.min(rounded, other);
}

function nextFloat32Up(value: number): number {
  if (value === 0) return 2 ** -149;
  floatScratch[0] = value;
  floatBits[0] = value > 0 ? floatBits[0]! + 1 : floatBits[0]! - 1;
  return floatScratch[0];
}

function nextFloat32Down(value: number): number {
  return -nextFloat32Up(-value);
}
