/**
 * Writes the bytes of the small ONNX models the runtime uses itself, with symbolic dims:
 * - `y = Identity(x)`: on WebGPU a session of it, created with CPU outputs, copies a GPU-resident
 *   tensor to the CPU (onnxruntime-node cannot download a `gpu-buffer` tensor directly: its
 *   `getData()` aborts the process, but it copies model outputs to the CPU when asked to);
 * - `y = Cast(x, to)`: converts float32 host data for float16 inputs inside onnxruntime (vectorised
 *   on the CPU, a GPU kernel on WebGPU) instead of element by element in JavaScript;
 * - `yⱼ = Σᵢ wⱼᵢ·xⱼᵢ`: weighted sums of same-shaped tensors where they live, many in one run
 *   (the 13 ControlNet residuals scaled and summed on the GPU in one session run);
 * - `pixels = imagePixels(x)`: decoded `[f, 3, H, W]` tensors in [-1, 1] to `[f, H, W, 3]` uint8
 *   RGB, on the device that decoded them, so only the pixels come back (a quarter of fp32's bytes)
 *   and no JavaScript loop touches them.
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

function valueInfo(name: string, type: TensorType, rank: number, dimPrefix = 'd'): number[] {
  const dims = Array.from({ length: rank }, (_, axis) => bytesField(1, bytesField(2, `${dimPrefix}${axis}`))).flat();
  const tensorType = [...numberField(1, ELEMENT_TYPES[type]), ...bytesField(2, dims)];
  // ValueInfoProto { name = 1, type = 2 { tensor_type = 1 } }
  return [...bytesField(1, name), ...bytesField(2, bytesField(1, tensorType))];
}

/** AttributeProto { name = 1, i = 3, type = 20 (INT = 2) }. */
function intAttribute(name: string, value: number): number[] {
  return [...bytesField(1, name), ...numberField(3, value), ...numberField(20, 2)];
}

/** AttributeProto { name = 1, ints = 8, type = 20 (INTS = 7) }. */
function intsAttribute(name: string, values: readonly number[]): number[] {
  return [...bytesField(1, name), ...values.flatMap((value) => numberField(8, value)), ...numberField(20, 7)];
}

/** A float32 scalar initializer: TensorProto { data_type = 2, float_data = 4 (packed), name = 8 }. */
function scalarInitializer(name: string, value: number): number[] {
  const bytes = new Uint8Array(new Float32Array([value]).buffer);
  return [...numberField(2, ELEMENT_TYPES.float32), ...bytesField(4, [...bytes]), ...bytesField(8, name)];
}

interface GraphNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly output: string;
  readonly attributes?: readonly number[][];
}

interface GraphValue {
  readonly name: string;
  readonly type: TensorType;
  readonly rank: number;
  /** Symbolic dim names are `<prefix><axis>`: values sharing a prefix share their dims. Default `d`. */
  readonly dimPrefix?: string;
}

/** A model of `nodes` in order, from `inputs` to `outputs`, with float32 scalar constants. */
function graphModel(
  name: string,
  inputs: GraphValue | readonly GraphValue[],
  outputs: GraphValue | readonly GraphValue[],
  nodes: readonly GraphNode[],
  scalars: Readonly<Record<string, number>> = {},
): Uint8Array {
  // NodeProto { input = 1, output = 2, op_type = 4, attribute = 5 }
  const nodeBytes = nodes.map((node) => [
    ...node.inputs.flatMap((value) => bytesField(1, value)),
    ...bytesField(2, node.output),
    ...bytesField(4, node.op),
    ...(node.attributes ?? []).flatMap((attribute) => bytesField(5, attribute)),
  ]);
  // GraphProto { node = 1, name = 2, initializer = 5, input = 11, output = 12 }
  const graph = [
    ...nodeBytes.flatMap((node) => bytesField(1, node)),
    ...bytesField(2, name),
    ...Object.entries(scalars).flatMap(([scalar, value]) => bytesField(5, scalarInitializer(scalar, value))),
    ...(Array.isArray(inputs) ? inputs : [inputs]).flatMap((input: GraphValue) => bytesField(11, valueInfo(input.name, input.type, input.rank, input.dimPrefix))),
    ...(Array.isArray(outputs) ? outputs : [outputs]).flatMap((output: GraphValue) => bytesField(12, valueInfo(output.name, output.type, output.rank, output.dimPrefix))),
  ];
  // ModelProto { ir_version = 1, producer_name = 2, graph = 7, opset_import = 8 }
  const model = [
    ...numberField(1, 8),
    ...bytesField(2, 'streamdiffusion-ts'),
    ...bytesField(7, graph),
    ...bytesField(8, [...bytesField(1, ''), ...numberField(2, 17)]),
  ];
  return Uint8Array.from(model);
}

/** A model of one node `y = op(x)` from `x: inputType` to `y: outputType`, both of `rank`. */
function oneNodeModel(op: string, inputType: TensorType, outputType: TensorType, rank: number, attributes: number[][] = []): Uint8Array {
  return graphModel(op.toLowerCase(), { name: 'x', type: inputType, rank }, { name: 'y', type: outputType, rank }, [
    { op, inputs: ['x'], output: 'y', attributes },
  ]);
}

/** ONNX bytes of `y = Identity(x)` for tensors of `type` and `rank` (opset 17, IR version 8). */
export function identityModel(type: TensorType, rank: number): Uint8Array {
  return oneNodeModel('Identity', type, type, rank);
}

/** ONNX bytes of `y = Cast(x, to)` from `from` to `to` tensors of `rank` (opset 17, IR version 8). */
export function castModel(from: TensorType, to: TensorType, rank: number): Uint8Array {
  return oneNodeModel('Cast', from, to, rank, [intAttribute('to', ELEMENT_TYPES[to])]);
}

/**
 * ONNX bytes of independent weighted sums, one per entry of `ranks`: `yⱼ = Σᵢ wⱼᵢ·xⱼᵢ` over `count`
 * tensors `xj_0…` of `type` and rank `ranks[j]`, with weights `wj_0…` of the same element type and
 * rank that broadcast against them (`[1, 1, …]` for one weight, `[b, 1, …]` for one per batch
 * entry); opset 17 `Mul` then `Sum`, in input order. One session run computes them all.
 */
export function weightedSumsModel(type: 'float32' | 'float16', ranks: readonly number[], count: number): Uint8Array {
  const terms = Array.from({ length: count }, (_, index) => index);
  return graphModel(
    'weighted-sums',
    ranks.flatMap((rank, group) =>
      terms.flatMap((index) => [
        { name: `x${group}_${index}`, type, rank, dimPrefix: `g${group}_` },
        { name: `w${group}_${index}`, type, rank, dimPrefix: `w${group}_${index}_` },
      ]),
    ),
    ranks.map((rank, group) => ({ name: `y${group}`, type, rank, dimPrefix: `g${group}_` })),
    ranks.flatMap((_, group) => [
      ...terms.map((index) => ({ op: 'Mul', inputs: [`x${group}_${index}`, `w${group}_${index}`], output: `p${group}_${index}` })),
      { op: 'Sum', inputs: terms.map((index) => `p${group}_${index}`), output: `y${group}` },
    ]),
  );
}

/**
 * ONNX bytes of `pixels = imagePixels(x)`: `x` `[f, 3, H, W]` float32 or float16 in [-1, 1] →
 * `pixels` `[f, H, W, 3]` uint8 RGB. Step for step what `tensorToImage` does in float32 (diffusers'
 * postprocessing): (x / 2 + 0.5) clipped to [0, 1], × 255, rounded half to even.
 */
export function imagePixelsModel(inputType: 'float32' | 'float16'): Uint8Array {
  const nodes: GraphNode[] = [
    ...(inputType === 'float16' ? [{ op: 'Cast', inputs: ['x'], output: 'x32', attributes: [intAttribute('to', ELEMENT_TYPES.float32)] }] : []),
    { op: 'Transpose', inputs: [inputType === 'float16' ? 'x32' : 'x'], output: 'nhwc', attributes: [intsAttribute('perm', [0, 2, 3, 1])] },
    { op: 'Div', inputs: ['nhwc', 'two'], output: 'halved' },
    { op: 'Add', inputs: ['halved', 'half'], output: 'shifted' },
    { op: 'Clip', inputs: ['shifted', 'zero', 'one'], output: 'unit' },
    { op: 'Mul', inputs: ['unit', 'full'], output: 'scaled' },
    { op: 'Round', inputs: ['scaled'], output: 'rounded' },
    { op: 'Cast', inputs: ['rounded'], output: 'pixels', attributes: [intAttribute('to', ELEMENT_TYPES.uint8)] },
  ];
  return graphModel('image-pixels', { name: 'x', type: inputType, rank: 4 }, { name: 'pixels', type: 'uint8', rank: 4 }, nodes, {
    two: 2,
    half: 0.5,
    zero: 0,
    one: 1,
    full: 255,
  });
}
