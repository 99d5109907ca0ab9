import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readGoldenJson } from '../../test-support/goldens.js';
import { InvalidArgumentError } from '../errors/errors.js';
import { createTorchGenerator } from './torch-generator.js';
import { torchRandn } from './torch-randn.js';

// Made by `PYTHONPATH=tools/export python3 -m streamdiffusion_export randn-goldens --out
// fixtures/goldens/torch-randn.json.gz` (torch 2.13.0+cpu, x86-64 Linux, AVX-512 CPU).
interface EncodedTensor {
  dtype: 'float32';
  dims: number[];
  data: string;
}
interface LargeRecord {
  dims: number[];
  sha256: string;
  sum: number;
  sample_indices: number[];
  sample_bits: string[];
}
interface RandnGoldens {
  torch: string;
  cpu_capability: string;
  cases: { seed: number; shape: number[]; tensor: EncodedTensor }[];
  large: ({ seed: number; shape: number[] } & LargeRecord)[];
  sequences: { seed: number; calls: { shape: number[]; result: EncodedTensor | LargeRecord }[] }[];
}

const goldens = (await readGoldenJson('torch-randn.json.gz')) as RandnGoldens;

function goldenBits(tensor: EncodedTensor): Uint32Array {
  const bytes = Buffer.from(tensor.data, 'base64');
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Every element whose bit pattern differs, described; empty when all are identical. */
function bitMismatches(ours: Float32Array, expected: Uint32Array): string[] {
  const ourBits = bitsOf(ours);
  const mismatches: string[] = [];
  if (ourBits.length !== expected.length) return [`length ${ourBits.length}, expected ${expected.length}`];
  for (let index = 0; index < expected.length; index += 1) {
    if (ourBits[index] !== expected[index]) {
      const torchValue = new Float32Array(new Uint32Array([expected[index]!]).buffer)[0];
      const ourHex = ourBits[index]!.toString(16);
      mismatches.push(`[${index}] ${ours[index]} (0x${ourHex}) vs torch ${torchValue} (0x${expected[index]!.toString(16)})`);
    }
  }
  return mismatches;
}

function checkLarge(ours: Float32Array, record: LargeRecord): void {
  const samples = record.sample_indices.map((index) => bitsOf(ours)[index]!.toString(16).padStart(8, '0'));
  expect(samples).toEqual(record.sample_bits);
  expect(createHash('sha256').update(bitsOf(ours)).digest('hex')).toBe(record.sha256);
  // The hash already proves every bit; the sum only makes a failure easier to read.
  expect(ours.reduce((sum, value) => sum + value, 0)).toBeCloseTo(record.sum, 6);
}

describe('torchRandn against torch.randn goldens', () => {
  it('was recorded on the x86-64 AVX2 code path it reproduces', () => {
    expect(['AVX2', 'AVX512']).toContain(goldens.cpu_capability);
    expect(goldens.cases).toHaveLength(66);
  });

  it.each(goldens.cases.map((entry) => [entry.seed, entry.shape.join('x'), entry] as const))(
    'seed %s, shape [%s]: every bit',
    (_seed, _shape, entry) => {
      const ours = torchRandn(entry.shape, entry.seed);
      expect(bitMismatches(ours, goldenBits(entry.tensor))).toEqual([]);
    },
  );

  it.each(goldens.large.map((entry) => [entry.seed, entry] as const))(
    'seed %s, shape [1, 4, 64, 64]: sha256 of the bytes, samples and sum',
    (_seed, entry) => {
      checkLarge(torchRandn(entry.shape, entry.seed), entry);
    },
  );

  const sequences = goldens.sequences.map(
    (entry) => [entry.seed, entry.calls.map((call) => `[${call.shape.join(', ')}]`).join(' '), entry] as const,
  );
  it.each(sequences)(
    'one generator, seed %s, calls %s: continues the stream and the cached sample',
    (_seed, _calls, entry) => {
      const generator = createTorchGenerator(entry.seed);
      for (const call of entry.calls) {
        const ours = generator.randn(call.shape);
        if ('sha256' in call.result) checkLarge(ours, call.result);
        else expect(bitMismatches(ours, goldenBits(call.result))).toEqual([]);
      }
    },
  );
});

describe('createTorchGenerator', () => {
  it('uses only the low 32 bits of the seed and wraps negative seeds like initial_seed()', () => {
    expect(torchRandn([40], 2 ** 32 + 5)).toEqual(torchRandn([40], 5));
    expect(torchRandn([3], 2n ** 32n + 5n)).toEqual(torchRandn([3], 5));
    expect(createTorchGenerator(-1).initialSeed).toBe(2n ** 64n - 1n);
    expect(createTorchGenerator(-1).randn([20])).toEqual(torchRandn([20], 2n ** 64n - 1n));
    expect(createTorchGenerator(-(2n ** 63n)).randn([5])).toEqual(torchRandn([5], 0));
  });

  it('clones the engine and the cached normal sample', () => {
    const generator = createTorchGenerator(7);
    generator.randn([3]); // leaves the sine half of the second pair cached
    const copy = generator.clone();
    expect(copy.randn([1])).toEqual(generator.randn([1]));
    expect(copy.randn([700])).toEqual(generator.randn([700]));
  });

  it('handles a scalar shape and empty shapes without drawing', () => {
    expect(torchRandn([], 0)).toEqual(torchRandn([1], 0));
    const generator = createTorchGenerator(3);
    expect(generator.randn([4, 0])).toHaveLength(0);
    expect(generator.randn([2])).toEqual(torchRandn([2], 3));
  });

  it('rejects seeds torch would reject and malformed shapes, naming the field', () => {
    for (const seed of [0.5, Number.NaN, 2 ** 53, 2n ** 64n, -(2n ** 63n) - 1n]) {
      expect(() => createTorchGenerator(seed)).toThrow(InvalidArgumentError);
    }
    expect(() => torchRandn([2, -1], 0)).toThrow(/shape: expected an array of non-negative integers/);
    expect(() => torchRandn([1.5], 0)).toThrow(InvalidArgumentError);
    expect(() => torchRandn([2 ** 20, 2 ** 20], 0)).toThrow(/at most/);
  });
});
