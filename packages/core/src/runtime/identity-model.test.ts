import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { float32ToFloat16Bits } from './dtypes.js';
import { identityModel } from './identity-model.js';

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
