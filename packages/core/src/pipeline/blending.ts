/**
 * Prompt and seed blending (DESIGN §4): several weighted prompts or seeds mixed into one
 * conditioning or one noise. Weights are normalised to sum to 1 unless told not to.
 */
import { InvalidArgumentError } from '../errors/errors.js';

/** Weights divided by their sum (when `normalize`), checked to be usable. */
export function blendWeights(weights: readonly number[], options: { readonly field: string; readonly normalize: boolean }): number[] {
  const sum = weights.reduce((total, weight) => total + weight, 0);
  if (weights.length === 0 || weights.some((weight) => !Number.isFinite(weight) || weight < 0) || sum <= 0) {
    throw new InvalidArgumentError({ field: options.field, value: weights, expected: 'one or more weights >= 0 with a positive sum' });
  }
  return options.normalize ? weights.map((weight) => weight / sum) : [...weights];
}

/**
 * Spherical interpolation between two vectors, t = 0 → a, t = 1 → b. Nearly parallel vectors fall
 * back to linear interpolation, where slerp's sin θ in the denominator would lose all precision.
 */
export function slerp(a: Float32Array, b: Float32Array, t: number): Float32Array {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let index = 0; index < a.length; index += 1) {
    dot += a[index]! * b[index]!;
    normA += a[index]! * a[index]!;
    normB += b[index]! * b[index]!;
  }
  const cosine = dot / Math.sqrt(normA * normB);
  if (!Number.isFinite(cosine) || Math.abs(cosine) > 0.9995) return a.map((value, index) => (1 - t) * value + t * b[index]!);
  const theta = Math.acos(cosine);
  const sinTheta = Math.sin(theta);
  const weightA = Math.sin((1 - t) * theta) / sinTheta;
  const weightB = Math.sin(t * theta) / sinTheta;
  return a.map((value, index) => weightA * value + weightB * b[index]!);
}

/** Weighted sum of equally long vectors. */
function weightedSum(vectors: readonly Float32Array[], weights: readonly number[]): Float32Array {
  const sum = new Float32Array(vectors[0]!.length);
  for (const [which, vector] of vectors.entries()) {
    const weight = weights[which]!;
    for (let index = 0; index < sum.length; index += 1) sum[index] = sum[index]! + weight * vector[index]!;
  }
  return sum;
}

/** Prompt embeddings mixed by weight: slerp for exactly two (at t = the second weight's share), a weighted sum otherwise. */
export function blendEmbeddings(embeddings: readonly Float32Array[], weights: readonly number[], method: 'linear' | 'slerp'): Float32Array {
  if (embeddings.length === 1) return weightedSum(embeddings, weights);
  if (method === 'slerp' && embeddings.length === 2) {
    const share = weights[1]! / (weights[0]! + weights[1]!);
    const mixed = slerp(embeddings[0]!, embeddings[1]!, share);
    // Keep the weights' overall scale when they were not normalised.
    const scale = weights[0]! + weights[1]!;
    return scale === 1 ? mixed : mixed.map((value) => value * scale);
  }
  return weightedSum(embeddings, weights);
}

function norm(vector: Float32Array): number {
  let sum = 0;
  for (const value of vector) sum += value * value;
  return Math.sqrt(sum);
}

/**
 * Per-seed noises mixed by weight, rescaled to the mean of their norms: a weighted sum of
 * independent Gaussians is narrower than each, and the UNet expects unit-variance noise.
 */
export function blendNoise(noises: readonly Float32Array[], weights: readonly number[]): Float32Array {
  const mixed = weightedSum(noises, weights);
  const target = noises.reduce((total, noise) => total + norm(noise), 0) / noises.length;
  const current = norm(mixed);
  return current === 0 ? mixed : mixed.map((value) => (value * target) / current);
}
