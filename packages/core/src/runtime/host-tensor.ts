import { elementCount, tensorTypeOfData, type TensorData, type TensorDataByType, type TensorType } from './dtypes.js';
import { InvalidArgumentError } from '../errors/errors.js';

/** A tensor whose data is in this thread's memory. */
export interface HostTensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly dims: readonly number[];
  readonly data: TensorDataByType[T];
}

/**
 * Makes a host tensor and checks that the data length matches the dims.
 * The element type follows the array: Float32Array → float32, Uint16Array → float16 bits,
 * Int32Array → int32, BigInt64Array → int64.
 */
export function hostTensor<T extends TensorData>(data: T, dims: readonly number[]): HostTensor {
  const count = elementCount(dims);
  if (dims.some((dim) => !Number.isInteger(dim) || dim < 0) || data.length !== count) {
    throw new InvalidArgumentError({
      field: 'dims',
      value: dims,
      expected: `non-negative integer dims whose product equals the data length ${data.length}`,
    });
  }
  return { type: tensorTypeOfData(data), dims: [...dims], data };
}
