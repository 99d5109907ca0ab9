import { InvalidArgumentError } from '../errors/errors.js';

/** Options of {@link createSimilarityFilter}. */
export interface SimilarityFilterOptions {
  /** Cosine similarity at or above which a frame is always skippable; 0.98 by default. `>= 1` never skips. */
  readonly threshold?: number;
  /** Most frames skipped in a row; the next one is processed whatever its similarity. 10 by default. */
  readonly maxSkipFrames?: number;
  /** Uniform random numbers in [0, 1); `Math.random` by default. Inject one to make tests deterministic. */
  readonly random?: () => number;
}

/** What the filter decided for one input frame, and the similarity it saw. */
export interface SimilarityDecision {
  readonly skip: boolean;
  /** Cosine similarity to the last processed input; null for the first frame. */
  readonly similarity: number | null;
}

/**
 * StreamDiffusion's stochastic similarity filter: a frame nearly equal to the last processed one is
 * skipped (the caller shows the previous output) with probability
 * max(0, 1 − (1 − cos) / (1 − threshold)), and never more than `maxSkipFrames` times in a row.
 *
 * Unlike the Python original, the skip counter restarts whenever a frame is processed, so
 * "in a row" means in a row; and the comparison is always against the last *processed* input.
 */
export interface SimilarityFilter {
  /** Decides for the next input frame (the model's input tensor or the image, as flat values). */
  decide(input: Float32Array): SimilarityDecision;
  /** Forgets the last input (after a resolution change, say). */
  reset(): void;
  /** Frames skipped since the last processed one. */
  readonly skippedInARow: number;
}

function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let index = 0; index < a.length; index += 1) {
    const x = a[index]!;
    const y = b[index]!;
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  // torch.nn.CosineSimilarity(eps=1e-6) clamps each norm, so two black frames are not NaN.
  return dot / (Math.max(Math.sqrt(normA), 1e-6) * Math.max(Math.sqrt(normB), 1e-6));
}

/** Makes a similarity filter; options are validated here, once. */
export function createSimilarityFilter(options: SimilarityFilterOptions = {}): SimilarityFilter {
  const threshold = options.threshold ?? 0.98;
  const maxSkipFrames = options.maxSkipFrames ?? 10;
  const random = options.random ?? Math.random;
  if (!Number.isFinite(threshold) || threshold < 0) {
    throw new InvalidArgumentError({ field: 'similarity_threshold', value: threshold, expected: 'a number >= 0 (cosine similarity; >= 1 never skips)' });
  }
  if (!Number.isInteger(maxSkipFrames) || maxSkipFrames < 0) {
    throw new InvalidArgumentError({ field: 'max_skip_frame', value: maxSkipFrames, expected: 'an integer >= 0' });
  }
  let previous: Float32Array | undefined;
  let skippedInARow = 0;
  const processed = (input: Float32Array, similarity: number | null): SimilarityDecision => {
    previous = input.slice();
    skippedInARow = 0;
    return { skip: false, similarity };
  };
  return {
    get skippedInARow() {
      return skippedInARow;
    },
    reset() {
      previous = undefined;
      skippedInARow = 0;
    },
    decide(input) {
      if (previous === undefined || previous.length !== input.length) return processed(input, null);
      const similarity = cosineSimilarity(previous, input);
      const skipProbability = threshold >= 1 ? 0 : Math.max(0, 1 - (1 - similarity) / (1 - threshold));
      // `random() >= p` (the original has `p < random()`, which skips at p = 0 when random() is 0).
      if (random() >= skipProbability || skippedInARow >= maxSkipFrames) return processed(input, similarity);
      skippedInARow += 1;
      return { skip: true, similarity };
    },
  };
}
