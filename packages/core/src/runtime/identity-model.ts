/**
 * Writes the bytes of a one-node ONNX model, `y = Identity(x)`, for one element type and rank with
 * symbolic dims. On WebGPU a session of it, created with CPU outputs, copies a GPU-resident tensor
 * to the CPU: onnxruntime-node cannot download a `gpu-buffer` tensor directly (its `getData()`
 * aborts the process), but it copies model outputs to the CPU when asked to.
 *
 * The protobuf is written by hand because it is this small; field numbers are ONNX's (onnx.proto).
 */
import type { TensorType } from './dtypes.js';

const ELEMENT_TYPES: Record<TensorType, number> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

/** A varint field (wire type 0). */
function numberField(field: number, value: number): number[] {
  return [...varint(field << 3), ...varint(value)];
}

/** A length-delimited field (wire type 2): a string or an embedded message. */
function bytesField(field: number, content: number[] | string): number[] {
  const bytes = typeof content === 'string' ? [...Buffer.from(content, 'utf8')] : content;
  return [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
}

function valueInfo(name: string, type: TensorType, rank: number): number[] {
  const dims = Array.from({ length: rank }, (_, axis) => bytesField(1, bytesField(2, `d${axis}`))).flat();
  const tensorType = [...numberField(1, ELEMENT_TYPES[type]), ...bytesField(2, dims)];
  // ValueInfoProto { name = 1, type = 2 { tensor_type = 1 } }
  return [...bytesField(1, name), ...bytesField(2, bytesField(1, tensorType))];
}

/** ONNX bytes of `y = Identity(x)` for tensors of `type` and `rank` (opset 17, IR version 8). */
export function identityModel(type: TensorType, rank: number): Uint8Array {
  const node = [...bytesField(1, 'x'), ...bytesField(2, 'y'), ...bytesField(4, 'Identity')];
  const graph = [
    ...bytesField(1, node),
    ...bytesField(2, 'identity'),
    ...bytesField(11, valueInfo('x', type, rank)),
    ...bytesField(12, valueInfo('y', type, rank)),
  ];
  const model = [
    ...numberField(1, 8),
    ...bytesField(2, 'streamdiffusion-ts'),
    ...bytesField(7, graph),
    ...bytesField(8, [...bytesField(1, ''), ...numberField(2, 17)]),
  ];
  return Uint8Array.from(model);
}
