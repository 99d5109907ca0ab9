/**
 * float32 arithmetic as PyTorch's CPU kernels do it, for reproducing diffusers' scheduler tensors
 * bit for bit. Internal to the scheduler.
 *
 * Rounding a double result of +, −, ×, ÷ or √ on float32 operands to float32 gives the correctly
 * rounded float32 result (a double holds more than 2·24 + 2 bits, so the double rounding is
 * harmless): `Math.fround(a * b)` *is* a float32 multiply. A fused multiply-add is not covered by
 * that argument, which is why {@link fusedMultiplyAddFloat32} exists.
 */

/**
 * `a + b·k` rounded once to float32, as a fused multiply-add does it (`a`, `b` float32 values, `k` an
 * integer below 2^29 so that `b·k` is exact in a double).
 *
 * torch's AVX2/AVX512 (and ARM) builds compile `start + step * index` in `linspace` into an FMA,
 * so each value is rounded once, not after the multiply and again after the add.
 */
export function fusedMultiplyAddFloat32(a: number, b: number, k: number): number {
  const product = b * k; // exact: 24 + 29 bits fit a double
  return sumToFloat32(a, product);
}

/** `a + b` for doubles `a`, `b`, rounded once to float32 even when the double sum is inexact. */
export function sumToFloat32(a: number, b: number): number {
  const sum = a + b;
  const rounded = Math.fround(sum);
  // TwoSum: exactly what the double sum lost.
  const bPart = sum - a;
  const lost = a - (sum - bPart) + (b - bPart);
  if (lost === 0 || rounded === sum) return rounded;
  // Rounding the double can only mislead when it sits exactly halfway between two float32 values:
  // then the lost part decides the side. Halfway iff the mirror image of `rounded` is a float32.
  const mirror = 2 * sum - rounded;
  if (Math.fround(mirror) !== mirror) return rounded;
  return mirror > rounded === lost > 0 ? mirror : rounded;
}

