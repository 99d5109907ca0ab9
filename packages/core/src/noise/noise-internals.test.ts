import { describe, expect, it } from 'vitest';
import { fmaFloat32 } from '../math/float32-fma.js';
import { Mt19937 } from './mt19937.js';
import { cephesLogFloat32, cephesSinCosFloat32 } from './normal-fill-avx2.js';

describe('Mt19937', () => {
  it('gives std::mt19937 its required 10000th output for the default seed 5489', () => {
    // [rand.predef] in the C++ standard: the 10000th consecutive invocation produces 4123659995.
    const engine = new Mt19937(5489);
    let value = 0;
    for (let draw = 0; draw < 10000; draw += 1) value = engine.nextUint32();
    expect(value).toBe(4123659995);
  });

  it('starts with the reference outputs of init_genrand(0)', () => {
    const engine = new Mt19937(0);
    const outputs = [engine.nextUint32(), engine.nextUint32(), engine.nextUint32()];
    expect(outputs).toEqual([2357136044, 2546248239, 3071714933]);
  });
});

describe('fmaFloat32', () => {
  it('rounds once where rounding to double then to float would round twice', () => {
    // Exact: 1 + 2^-23 + 2^-24 - 2^-70, just below the midpoint 1 + 1.5·2^-23. The double sum is
    // that midpoint, which ties to the even neighbour 1 + 2^-22; one rounding gives 1 + 2^-23.
    const a = Math.fround(1 + 2 ** -23);
    const b = Math.fround((1 - 2 ** -23) * 2 ** -24);
    const c = Math.fround(1 + 2 ** -23);
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22);
    expect(fmaFloat32(a, b, c)).toBe(1 + 2 ** -23);
    expect(fmaFloat32(-a, b, -c)).toBe(-(1 + 2 ** -23));
  });

  it('matches exact rational rounding on random triples and on constructed midpoint cases', () => {
    let state = 12345;
    const next = (): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return Math.fround((state / 2 ** 32 - 0.5) * 4);
    };
    const triples: [number, number, number][] = [];
    for (let trial = 0; trial < 5000; trial += 1) triples.push([next(), next(), next()]);
    // a·b = 2^-24 ± a few ulps of 2^-47 and c odd: the double sum sits on or next to a float midpoint.
    for (let i = -3; i <= 3; i += 1) {
      for (let j = -3; j <= 3; j += 1) {
        for (let k = 0; k < 4; k += 1) {
          const a = Math.fround(1 + i * 2 ** -23);
          const b = Math.fround((1 + j * 2 ** -23) * 2 ** -24);
          const c = Math.fround(1 + k * 2 ** -23);
          triples.push([a, b, c], [-a, b, -c], [a, b * 2 ** 10, c * 2 ** 10]);
        }
      }
    }
    for (const [a, b, c] of triples) {
      expect(fmaFloat32(a, b, c), `${a} * ${b} + ${c}`).toBe(roundExactlyToFloat32(a, b, c));
    }
  });
});

/** `a * b + c` rounded once to float32 through exact integer arithmetic (normal results only). */
function roundExactlyToFloat32(a: number, b: number, c: number): number {
  const scale = 2 ** 149; // every float times 2^149 is an integer
  const scaled = (value: number): bigint => BigInt(value * scale);
  const exact = scaled(a) * scaled(b) + scaled(c) * scaled(1);
  const approximate = Math.fround(a * b + c);
  const candidates = [-1, 0, 1].map((step) => {
    const bits = new Float32Array([approximate]);
    const words = new Int32Array(bits.buffer);
    words[0]! += approximate < 0 ? -step : step;
    return bits[0]!;
  });
  const distance = (value: number): bigint => {
    const difference = exact - scaled(value) * scaled(1);
    return difference < 0n ? -difference : difference;
  };
  return candidates.reduce((best, candidate) => {
    const order = distance(candidate) - distance(best);
    if (order < 0n) return candidate;
    if (order > 0n) return best;
    const evenMantissa = (value: number): boolean => (new Uint32Array(new Float32Array([value]).buffer)[0]! & 1) === 0;
    return evenMantissa(candidate) ? candidate : best;
  });
}

describe('Cephes float32 log and sincos (avx_mathfun.h)', () => {
  it('stays within a few float ulps of the double-precision functions', () => {
    const out = { sin: 0, cos: 0 };
    for (let k = 1; k < 2 ** 24; k += 4099) {
      const x = Math.fround(k * 2 ** -24);
      expect(cephesLogFloat32(x)).toBeCloseTo(Math.log(x), 6);
      const theta = Math.fround(2 * Math.PI * x);
      cephesSinCosFloat32(theta, out);
      expect(out.sin).toBeCloseTo(Math.sin(theta), 6);
      expect(out.cos).toBeCloseTo(Math.cos(theta), 6);
    }
    expect(cephesLogFloat32(1)).toBe(0);
  });
});
