// torch's float32 Box-Muller for 16 elements on x86-64, reproduced bit for bit.
//
// Source: `NormalFill16<float, true>` in aten/src/ATen/native/cpu/DistributionTemplates.h (the
// AVX2 path, also taken on AVX-512 CPUs: DistributionKernels.cpp has no AVX-512 build), which calls
// `log256_ps` and `sincos256_ps` from aten/src/ATen/native/cpu/avx_mathfun.h: Julien Pommier's and
// Giovanni Garberoglio's SIMD ports of the Cephes single-precision log, sin and cos.
//
// Every step below is one float32 instruction of the shipped binary. GCC compiled the intrinsics
// with FMA contraction (-ffp-contract=fast with -mfma), so several `mul` + `add` pairs of the C
// source are single `vfmadd`/`vfnmadd`/`vfmsub` instructions, rounded once. Which ones was read
// from the disassembly of `NormalFill16<float, true>::operator()` in libtorch_cpu.so of torch
// 2.13.0+cpu (Linux x86-64 wheel); each contraction is marked "fused" below. A build that does not
// contract (MSVC, or clang's default) rounds those steps twice and differs in the last bit of some
// elements.

import { fmaFloat32 as fma } from '../math/float32-fma.js';

const f = Math.fround;

// Cephes logf, as float constants (the C source writes them as double literals into float arrays).
const SQRT_HALF = f(Math.SQRT1_2); // cephes_SQRTHF, 0.707106781186547524
const LOG_P0 = f(7.0376836292e-2);
const LOG_P1 = f(-1.151461031e-1);
const LOG_P2 = f(1.167699874e-1);
const LOG_P3 = f(-1.2420140846e-1);
const LOG_P4 = f(1.4249322787e-1);
const LOG_P5 = f(-1.6668057665e-1);
const LOG_P6 = f(2.0000714765e-1);
const LOG_P7 = f(-2.4999993993e-1);
const LOG_P8 = f(3.3333331174e-1);
const LOG_Q1 = f(-2.12194440e-4);
const LOG_Q2 = f(0.693359375);

// Cephes sinf/cosf.
const FOUR_OVER_PI = f(1.27323954473516);
const MINUS_DP1 = f(-0.78515625);
const MINUS_DP2 = f(-2.4187564849853515625e-4);
const MINUS_DP3 = f(-3.774894977445941e-8); // -3.77489497744594108e-8 in the C source: the same double
const SIN_P0 = f(-1.9515295891e-4);
const SIN_P1 = f(8.3321608736e-3);
const SIN_P2 = f(-1.6666654611e-1);
const COS_P0 = f(2.443315711809948e-5);
const COS_P1 = f(-1.388731625493765e-3);
const COS_P2 = f(4.166664568298827e-2);

/** `_mm256_set1_ps(2.0f * c10::pi<double>)`: 2π computed in double, then rounded to float. */
const TWO_PI = f(2 * Math.PI);

const floatScratch = new Float32Array(1);
const floatBits = new Int32Array(floatScratch.buffer);

/**
 * `log256_ps` for one lane, for x in [2^-24, 1] (what `1 - uniform` can be). Out of that range
 * the clamp to the smallest normal and the NaN mask of the original would matter; they are left out.
 */
export function cephesLogFloat32(x: number): number {
  floatScratch[0] = x;
  const bits = floatBits[0]!;
  // The exponent as a float, plus one: the mantissa is taken in [0.5, 1) rather than [1, 2).
  let exponent = ((bits >>> 23) - 127) + 1;
  floatBits[0] = (bits & ~0x7f800000) | 0x3f000000;
  const mantissa = floatScratch[0];
  let reduced: number;
  if (mantissa < SQRT_HALF) {
    exponent -= 1;
    reduced = f(f(mantissa - 1) + mantissa);
  } else {
    reduced = f(mantissa - 1);
  }
  const squared = f(reduced * reduced);
  let y = LOG_P0;
  y = fma(y, reduced, LOG_P1); // fused
  y = fma(y, reduced, LOG_P2); // fused
  y = fma(y, reduced, LOG_P3); // fused
  y = fma(y, reduced, LOG_P4); // fused
  y = fma(y, reduced, LOG_P5); // fused
  y = fma(y, reduced, LOG_P6); // fused
  y = fma(y, reduced, LOG_P7); // fused
  y = fma(y, reduced, LOG_P8); // fused
  y = f(y * reduced);
  y = fma(y, squared, f(exponent * LOG_Q1)); // fused: y * z + e * q1
  y = fma(-squared, 0.5, y); // fused: y - z * 0.5
  const sum = f(reduced + y);
  return fma(exponent, LOG_Q2, sum); // fused: x + e * q2
}

/** Output of {@link cephesSinCosFloat32}; reused to keep the hot loop free of allocations. */
export interface SinCos {
  sin: number;
  cos: number;
}

/** `sincos256_ps` for one lane, for x in [0, 2π) (what `2π · uniform` can be); writes into `out`. */
export function cephesSinCosFloat32(x: number, out: SinCos): void {
  // x >= 0 here, so the sine's sign bit from the argument is always clear.
  const scaled = f(x * FOUR_OVER_PI);
  // cvttps2dq truncates; then j = (j + 1) & ~1 picks the nearest even octant.
  const octant = ((scaled | 0) + 1) & ~1;
  let reduced = fma(octant, MINUS_DP1, x); // fused: x - j * DP1
  reduced = fma(MINUS_DP2, octant, reduced); // fused
  reduced = fma(octant, MINUS_DP3, reduced); // fused
  const flipSin = (octant & 4) !== 0;
  const flipCos = ((octant - 2) & 4) === 0;
  const sinPolynomialIsSin = (octant & 2) === 0;

  const z = f(reduced * reduced);
  const half = f(z * 0.5);
  let cosPolynomial = fma(COS_P0, z, COS_P1); // fused
  cosPolynomial = fma(cosPolynomial, z, COS_P2); // fused
  cosPolynomial = f(z * cosPolynomial);
  cosPolynomial = fma(z, cosPolynomial, -half); // fused: y * z - z * 0.5
  cosPolynomial = f(cosPolynomial + 1);
  let sinPolynomial = fma(SIN_P0, z, SIN_P1); // fused
  sinPolynomial = fma(sinPolynomial, z, SIN_P2); // fused
  sinPolynomial = f(z * sinPolynomial);
  sinPolynomial = fma(reduced, sinPolynomial, reduced); // fused: y2 * x + x

  // The selection is done with masks and adds in the original; the adds turn a -0 into +0, so
  // they are kept (all of them are exact).
  const sinFromSin = sinPolynomialIsSin ? sinPolynomial : 0;
  const sinFromCos = sinPolynomialIsSin ? 0 : cosPolynomial;
  const sin = sinFromCos + sinFromSin;
  const cos = sinPolynomial - sinFromSin + (cosPolynomial - sinFromCos);
  out.sin = flipSin ? -sin : sin;
  out.cos = flipCos ? -cos : cos;
}

const sinCos: SinCos = { sin: 0, cos: 0 };

/**
 * torch's `normal_fill_16` on `data[offset .. offset + 16)`, which holds 16 uniforms in [0, 1):
 * pairs element j (radius, from `1 - u`) with element j + 8 (angle) and overwrites both with
 * standard normal samples, `r·cos θ` in the first 8 and `r·sin θ` in the last 8.
 */
export function normalFill16(data: Float32Array, offset: number): void {
  for (let lane = 0; lane < 8; lane += 1) {
    const u1 = f(1 - data[offset + lane]!);
    const theta = f(TWO_PI * data[offset + lane + 8]!);
    const radius = f(Math.sqrt(f(-2 * cephesLogFloat32(u1))));
    cephesSinCosFloat32(theta, sinCos);
    // `fmadd(n, std, mean)` with std 1 and mean 0: exact, but turns -0 into +0, as `+ 0` does.
    data[offset + lane] = f(radius * sinCos.cos) + 0;
    data[offset + lane + 8] = f(radius * sinCos.sin) + 0;
  }
}
