import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/errors.js';
import { createSimilarityFilter } from './similarity-filter.js';

const frame = (...values: number[]): Float32Array => Float32Array.from(values);
/** A random source that returns the given numbers in turn. */
const sequence = (...values: number[]): (() => number) => {
  let index = 0;
  return () => values[index++ % values.length]!;
};

describe('similarity filter', () => {
  it('always processes the first frame', () => {
    const filter = createSimilarityFilter({ random: () => 0 });
    expect(filter.decide(frame(1, 2, 3))).toEqual({ skip: false, similarity: null });
  });

  it('skips identical frames with probability 1 and different ones by the formula', () => {
    // cos = 0.99 between these (1 − (1 − 0.99) / (1 − 0.98) = 0.5 skip probability).
    const a = frame(1, 0);
    const b = frame(0.99, Math.sqrt(1 - 0.99 * 0.99));
    const skipBelowHalf = createSimilarityFilter({ threshold: 0.98, random: sequence(0.49) });
    skipBelowHalf.decide(a);
    expect(skipBelowHalf.decide(b).skip).toBe(true);
    const processAboveHalf = createSimilarityFilter({ threshold: 0.98, random: sequence(0.51) });
    processAboveHalf.decide(a);
    const decision = processAboveHalf.decide(b);
    expect(decision.skip).toBe(false);
    expect(decision.similarity).toBeCloseTo(0.99, 6); // float32 inputs
    const same = createSimilarityFilter({ random: sequence(0.999999) });
    same.decide(a);
    expect(same.decide(a).skip).toBe(true);
  });

  it('never skips frames below the threshold, nor anything when the threshold is >= 1', () => {
    const far = createSimilarityFilter({ threshold: 0.98, random: sequence(0) });
    far.decide(frame(1, 0));
    expect(far.decide(frame(0.97, Math.sqrt(1 - 0.97 * 0.97))).skip).toBe(false);
    const off = createSimilarityFilter({ threshold: 1, random: sequence(0) });
    off.decide(frame(1, 0));
    expect(off.decide(frame(1, 0)).skip).toBe(false);
  });

  it('skips at most maxSkipFrames in a row, then processes one', () => {
    const filter = createSimilarityFilter({ maxSkipFrames: 3, random: sequence(0) });
    const still = frame(1, 1, 1);
    const skips = Array.from({ length: 9 }, () => filter.decide(still).skip);
    // First processed (no previous), then 3 skips, 1 forced, 3 skips, 1 forced.
    expect(skips).toEqual([false, true, true, true, false, true, true, true, false]);
  });

  it('restarts the skip count whenever a frame is processed (the original does not)', () => {
    // Alternating frames with cos 0.99 have skip probability 0.5: random 0.1 skips, 0.9 processes.
    const a = frame(1, 0);
    const b = frame(0.99, Math.sqrt(1 - 0.99 * 0.99));
    const filter = createSimilarityFilter({ threshold: 0.98, maxSkipFrames: 2, random: sequence(0.1, 0.9, 0.1, 0.1, 0.1) });
    filter.decide(a); // first: processed
    expect(filter.decide(b).skip).toBe(true); // 1 skip
    expect(filter.decide(b).skip).toBe(false); // processed by chance: the count starts again
    expect(filter.skippedInARow).toBe(0);
    expect(filter.decide(a).skip).toBe(true); // so 2 skips in a row are allowed again
    expect(filter.decide(a).skip).toBe(true);
    expect(filter.decide(a).skip).toBe(false); // then one is forced
  });

  it('gives two all-zero frames similarity 0, as torch.cosine_similarity does (not NaN), so they are not skipped', () => {
    const filter = createSimilarityFilter({ random: sequence(0.5) });
    filter.decide(frame(0, 0, 0));
    expect(filter.decide(frame(0, 0, 0))).toEqual({ skip: false, similarity: 0 });
  });

  it('names bad options', () => {
    expect(() => createSimilarityFilter({ threshold: Number.NaN })).toThrow(InvalidArgumentError);
    expect(() => createSimilarityFilter({ maxSkipFrames: 1.5 })).toThrow('max_skip_frame: expected an integer >= 0, got 1.5');
  });
});
