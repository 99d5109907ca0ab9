import { Float16Array } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import { convertTensorData, float16BitsToFloat32, float32ToFloat16Bits } from './dtypes.js';

describe('fp16 conversion', () => {
  it('decodes every half-precision bit pattern as the library does', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, bits) => bits);
    const ours = float16BitsToFloat32(all);
    const library = Float32Array.from(new Float16Array(all.buffer));
    for (let bits = 0; bits < 65536; bits += 1) {
      if (Number.isNaN(library[bits])) expect(ours[bits]).toBeNaN();
      else expect(Object.is(ours[bits], library[bits]), `bits 0x${bits.toString(16)}`).toBe(true);
    }
  });

  it('rounds fp32 to the nearest half, ties to even, and saturates to infinity', () => {
    const values = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, -0, 2 ** -24, 2 ** -26]);
    expect(Array.from(float32ToFloat16Bits(values), (bits) => bits.toString(16))).toEqual(['3c00', '3c00', '3c02', '7bff', '7c00', '8000', '1', '0']);
  });

  it('converts between int32 and int64 ids and refuses conversions that change meaning', () => {
    expect(convertTensorData(new Int32Array([49407, -1]), 'int32', 'int64')).toEqual(new BigInt64Array([49407n, -1n]));
    expect(convertTensorData(new BigInt64Array([5n]), 'int64', 'int32')).toEqual(new Int32Array([5]));
    expect(convertTensorData(new Float32Array([1]), 'float32', 'int32')).toBeUndefined();
  });
});
