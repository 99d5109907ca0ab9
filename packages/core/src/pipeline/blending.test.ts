import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/errors.js';
import { torchRandn } from '../noise/torch-randn.js';
import { blendEmbeddings, blendNoise, blendWeights, slerp } from './blending.js';

const norm = (vector: Float32Array) => Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));

describe('blending', () => {
  it('normalises weights unless told not to, and names bad ones', () => {
    expect(blendWeights([1, 3], { field: 'prompt_blending', normalize: true })).toEqual([0.25, 0.75]);
    expect(blendWeights([1, 3], { field: 'prompt_blending', normalize: false })).toEqual([1, 3]);
    expect(() => blendWeights([0, 0], { field: 'seed_blending', normalize: true })).toThrow(InvalidArgumentError);
    expect(() => blendWeights([1, -1], { field: 'seed_blending', normalize: true })).toThrow(/seed_blending: expected one or more weights >= 0/);
  });

  it('slerps along the arc: the midpoint of two orthogonal unit vectors has unit length', () => {
    const mid = slerp(Float32Array.of(1, 0), Float32Array.of(0, 1), 0.5);
    expect(mid[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(mid[1]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(Array.from(slerp(Float32Array.of(1, 0), Float32Array.of(0, 1), 0))).toEqual([1, 0]);
    // Parallel vectors fall back to a straight line rather than dividing by sin 0.
    expect(Array.from(slerp(Float32Array.of(2, 0), Float32Array.of(4, 0), 0.5))).toEqual([3, 0]);
  });

  it('slerps exactly two prompts and sums three or more', () => {
    const a = Float32Array.of(1, 0);
    const b = Float32Array.of(0, 1);
    const c = Float32Array.of(1, 1);
    expect(Array.from(blendEmbeddings([a, b], [0.5, 0.5], 'slerp')).map((value) => Number(value.toFixed(6)))).toEqual([0.707107, 0.707107]);
    expect(Array.from(blendEmbeddings([a, b], [0.5, 0.5], 'linear'))).toEqual([0.5, 0.5]);
    expect(Array.from(blendEmbeddings([a, b, c], [0.5, 0.25, 0.25], 'slerp'))).toEqual([0.75, 0.5]);
  });

  it('mixes seed noises and keeps them at the scale of one noise', () => {
    const first = torchRandn([1, 4, 8, 8], 1);
    const second = torchRandn([1, 4, 8, 8], 2);
    const mixed = blendNoise([first, second], [0.5, 0.5]);
    expect(norm(mixed)).toBeCloseTo((norm(first) + norm(second)) / 2, 3);
    expect(Array.from(blendNoise([first], [1]))).toEqual(Array.from(first));
  });
});
