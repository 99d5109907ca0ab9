import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { tensorToImage } from '../image/image.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from './dtypes.js';
import { castModel, identityModel, imagePixelsModel } from './helper-models.js';

// The hand-written ONNX bytes must make a valid model that returns its input unchanged, for every
// element type and rank the runtime may need to read back from the GPU.
describe('identityModel', () => {
  const cases = [
    { type: 'float32', dims: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, -1e8]) },
    { type: 'float16', dims: [1, 2, 1, 2], data: float32ToFloat16Bits(new Float32Array([0.5, -1, 65504, 0.000061])) },
    { type: 'int32', dims: [3], data: new Int32Array([7, -1, 49407]) },
    { type: 'int64', dims: [1, 1, 2], data: new BigInt64Array([1n, -(2n ** 40n)]) },
    { type: 'uint8', dims: [4], data: new Uint8Array([0, 1, 128, 255]) },
    { type: 'bool', dims: [2, 1], data: new Uint8Array([1, 0]) },
    { type: 'float32', dims: [], data: new Float32Array([42]) },
  ] as const;

  for (const { type, dims, data } of cases) {
    it(`copies ${type} of rank ${dims.length}`, async () => {
      const session = await ort.InferenceSession.create(identityModel(type, dims.length));
      try {
        expect(session.inputMetadata[0]).toMatchObject({ name: 'x', type, shape: dims.map((_, axis) => `d${axis}`) });
        const { y } = await session.run({ x: new ort.Tensor(type, data, dims) });
        expect(y?.dims).toEqual(dims);
        expect(Array.from(y!.data as ArrayLike<unknown>)).toEqual(Array.from(data as ArrayLike<unknown>));
      } finally {
        await session.release();
      }
    });
  }
});

describe('castModel', () => {
  it('converts float32 to float16 bits exactly as the fp16 library rounds (nearest even, overflow to infinity)', async () => {
    const values = new Float32Array([0, -0, 1, -2.5, 0.1, 1 / 3, 65504, 65520, 1e6, -1e-8, 5.96e-8, 2 ** -24 * 1.5, Number.NaN]);
    const session = await ort.InferenceSession.create(castModel('float32', 'float16', 2));
    try {
      const { y } = await session.run({ x: new ort.Tensor('float32', values, [1, values.length]) });
      expect(y?.type).toBe('float16');
      const bits = Array.from(y!.data as Uint16Array);
      const expected = Array.from(float32ToFloat16Bits(values));
      // NaN payloads may differ; every other value must be the same bits.
      expect(bits.slice(0, -1)).toEqual(expected.slice(0, -1));
      expect((bits.at(-1)! & 0x7c00) === 0x7c00 && (bits.at(-1)! & 0x3ff) !== 0).toBe(true);
    } finally {
      await session.release();
    }
  });
});

describe('imagePixelsModel', () => {
  // Two 3×5 frames: ordinary values, both clip ends, values beyond them, and values whose × 255
  // lands exactly on .5 (rounded half to even: 0.5 → 0, 1.5 → 2), so a plain Math.round would fail.
  const height = 3;
  const width = 5;
  const plane = height * width;
  const values = new Float32Array(2 * 3 * plane);
  const special = [-1, 1, -1.5, 7, 0, 1 / 255 - 1, 3 / 255 - 1, 5 / 255 - 1, 0.25, -0.3];
  for (let index = 0; index < values.length; index += 1) values[index] = special[index % special.length] ?? Math.sin(index * 1.7);
  for (let index = special.length; index < values.length; index += 3) values[index] = Math.sin(index * 0.37) * 1.2;

  const expectedPixels = (input: Float32Array): number[] =>
    [0, 1].flatMap((frame) => Array.from(tensorToImage(input.subarray(frame * 3 * plane, (frame + 1) * 3 * plane), [1, 3, height, width]).data));

  for (const type of ['float32', 'float16'] as const) {
    it(`turns [f, 3, H, W] ${type} in [-1, 1] into the same [f, H, W, 3] pixels as tensorToImage`, async () => {
      const session = await ort.InferenceSession.create(imagePixelsModel(type));
      try {
        const data = type === 'float16' ? float32ToFloat16Bits(values) : values;
        const { pixels } = await session.run({ x: new ort.Tensor(type, data, [2, 3, height, width]) });
        expect(pixels?.type).toBe('uint8');
        expect(pixels?.dims).toEqual([2, height, width, 3]);
        // fp16 input is compared with what its fp16 values give in float32.
        const reference = type === 'float16' ? float16BitsToFloat32(data as Uint16Array) : values;
        expect(Array.from(pixels!.data as Uint8Array)).toEqual(expectedPixels(reference));
      } finally {
        await session.release();
      }
    });
  }
});
