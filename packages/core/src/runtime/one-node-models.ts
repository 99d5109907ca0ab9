/**
 * Writes the bytes of one-node ONNX models the runtime uses itself, for one element type and rank
 * with symbolic dims:
 * - `y = Identity(x)`: on WebGPU a session of it, created with CPU outputs, copies a GPU-resident
 *   tensor to the CPU (onnxruntime-node cannot download a `gpu-buffer` tensor directly: its
 *   `getData()` aborts the process, but it copies model outputs to the CPU when asked to);
 * - `y = Cast(x, to)`: converts float32 host data for float16 inputs inside onnxruntime (vectorised
 *   on the CPU, a GPU kernel on WebGPU) instead of element by element in JavaScript.
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

/** AttributeProto { name = 1, i = 3, type = 20 (INT = 2) }. */
function intAttribute(name: string, value: number): number[] {
  return [...bytesField(1, name), ...numberField(3, value), ...numberField(20, 2)];
}

/** A model of one node `y = op(x)` from `x: inputType` to `y: outputType`, both of `rank`. */
function oneNodeModel(op: string, inputType: TensorType, outputType: TensorType, rank: number, attributes: number[][] = []): Uint8Array {
  // NodeProto { input = 1, output = 2, op_type = 4, attribute = 5 }
  const node = [...bytesField(1, 'x'), ...bytesField(2, 'y'), ...bytesField(4, op), ...attributes.flatMap((attribute) => bytesField(5, attribute))];
  const graph = [
    ...bytesField(1, node),
    ...bytesField(2, op.toLowerCase()),
    ...bytesField(11, valueInfo('x', inputType, rank)),
    ...bytesField(12, valueInfo('y', outputType, rank)),
  ];
  const model = [
    ...numberField(1, 8),
    ...bytesField(2, 'streamdiffusion-ts'),
    ...bytesField(7, graph),
    ...bytesField(8, [...bytesField(1, ''), ...numberField(2, 17)]),
  ];
  return Uint8Array.from(model);
}

/** ONNX bytes of `y = Identity(x)` for tensors of `type` and `rank` (opset 17, IR version 8). */
export function identityModel(type: TensorType, rank: number): Uint8Array {
  return oneNodeModel('Identity', type, type, rank);
}

/** ONNX bytes of `y = Cast(x, to)` from `from` to `to` tensors of `rank` (opset 17, IR version 8). */
export function castModel(from: TensorType, to: TensorType, rank: number): Uint8Array {
  return oneNodeModel('Cast', from, to, rank, [intAttribute('to', ELEMENT_TYPES[to])]);
}
