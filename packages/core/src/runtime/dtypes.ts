import { Float16Array, getFloat16 } from '@petamoriken/float16';

/** Precisions a pipeline's float models can be exported and run in. */
export const DTYPES = Object.freeze(['fp32', 'fp16'] as const);
/** A pipeline precision: `fp32` or `fp16`. */
export type Dtype = (typeof DTYPES)[number];

/** Element types a tensor can have on its way into or out of a model. */
export const TENSOR_TYPES = Object.freeze(['float32', 'float16', 'int32', 'int64', 'uint8', 'bool'] as const);
/** The element type of a tensor, named as onnxruntime names it. */
export type TensorType = (typeof TENSOR_TYPES)[number];

/** The JS array that holds each element type. fp16 travels as raw bits in a `Uint16Array`. */
export interface TensorDataByType {
  float32: Float32Array;
  float16: Uint16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

/** Any tensor data array we accept. */
export type TensorData = TensorDataByType[TensorType];

/** The float element type a precision uses. */
export function floatTypeOf(dtype: Dtype): 'float32' | 'float16' {
  return dtype === 'fp16' ? 'float16' : 'float32';
}

/** fp32 values → IEEE half-precision bits (round to nearest even), through @petamoriken/float16. */
export function float32ToFloat16Bits(values: Float32Array): Uint16Array {
  const half = new Float16Array(values);
  return new Uint16Array(half.buffer, half.byteOffset, half.length);
}

let halfToFloat: Float32Array | undefined;

/**
 * Every one of the 65536 half-precision values as fp32, decoded once by @petamoriken/float16.
 * Looking values up is ~50x faster than iterating its `Float16Array` (a Proxy): 786k values
 * (one 512x512 RGB image) take ~3 ms instead of ~140 ms.
 */
function halfToFloatTable(): Float32Array {
  if (halfToFloat === undefined) {
    const view = new DataView(new ArrayBuffer(2));
    halfToFloat = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits += 1) {
      view.setUint16(0, bits, true);
      halfToFloat[bits] = getFloat16(view, 0, true);
    }
  }
  return halfToFloat;
}

/** IEEE half-precision bits → fp32 values. */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const table = halfToFloatTable();
  const values = new Float32Array(bits.length);
  for (let index = 0; index < bits.length; index += 1) values[index] = table[bits[index]!]!;
  return values;
}

/** Number of elements a shape holds. */
export function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const dim of dims) count *= dim;
  return count;
}

/**
 * Converts host data to the element type a model declares, where that is lossless in meaning:
 * fp32 ↔ fp16 and int32 ↔ int64. Returns undefined when no such conversion exists.
 */
export function convertTensorData(data: TensorData, from: TensorType, to: TensorType): TensorData | undefined {
  if (from === to) return data;
  if (from === 'float32' && to === 'float16') return float32ToFloat16Bits(data as Float32Array);
  if (from === 'float16' && to === 'float32') return float16BitsToFloat32(data as Uint16Array);
  if (from === 'int32' && to === 'int64') return BigInt64Array.from(data as Int32Array, (value) => BigInt(value));
  if (from === 'int64' && to === 'int32') return Int32Array.from(data as BigInt64Array, (value) => Number(value));
  return undefined;
}

/** The element type a data array holds, when it is unambiguous (Uint16Array means fp16). */
export function tensorTypeOfData(data: TensorData): TensorType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'uint8';
}
