/**
 * ONNX model files, decoded and encoded with protobufjs and the ONNX schema (proto/onnx.proto):
 * for the LoRA merge (find a layer's weight initializer, replace its data) and for the EPContext
 * wrapper models that point onnxruntime's TensorRT provider at an engine file.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { packageFile } from '../package-file.js';

/** ONNX TensorProto.DataType values used here. */
export const ONNX_TYPES = { float: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, double: 11, bfloat16: 16 } as const;

export interface OnnxTensor {
  dims?: (number | protobuf.Long)[];
  dataType?: number;
  name?: string;
  rawData?: Uint8Array;
  floatData?: number[];
  externalData?: { key: string; value: string }[];
  dataLocation?: number;
}

export interface OnnxAttribute {
  name?: string;
  type?: number;
  i?: number | protobuf.Long;
  s?: Uint8Array;
  f?: number;
  ints?: (number | protobuf.Long)[];
}

export interface OnnxNode {
  input?: string[];
  output?: string[];
  name?: string;
  opType?: string;
  domain?: string;
  attribute?: OnnxAttribute[];
}

export interface OnnxValueInfo {
  name?: string;
  type?: { tensorType?: { elemType?: number; shape?: { dim?: { dimValue?: number | protobuf.Long; dimParam?: string }[] } } };
}

export interface OnnxGraph {
  node?: OnnxNode[];
  name?: string;
  initializer?: OnnxTensor[];
  input?: OnnxValueInfo[];
  output?: OnnxValueInfo[];
}

export interface OnnxModelProto {
  irVersion?: number | protobuf.Long;
  opsetImport?: { domain?: string; version?: number | protobuf.Long }[];
  producerName?: string;
  producerVersion?: string;
  graph?: OnnxGraph;
  metadataProps?: { key: string; value: string }[];
}

let modelType: protobuf.Type | undefined;
function onnxModelType(): protobuf.Type {
  modelType ??= protobuf.parse(readFileSync(packageFile(join('proto', 'onnx.proto')), 'utf8'), { keepCase: false }).root.lookupType('onnx.ModelProto');
  return modelType;
}

/** Decodes an ONNX model file's bytes (tensor data stay views into `bytes`). */
export function decodeModel(bytes: Uint8Array): OnnxModelProto {
  return onnxModelType().decode(bytes) as unknown as OnnxModelProto;
}

export function encodeModel(model: OnnxModelProto): Uint8Array {
  const type = onnxModelType();
  return type.encode(type.fromObject(model)).finish();
}

export async function readModel(path: string): Promise<OnnxModelProto> {
  return decodeModel(await readFile(path));
}

/** An int64 field as a number: protobufjs gives a number, a Long, or `{ low, high }` bits. */
export const toNumber = (value: number | protobuf.Long | undefined): number => {
  if (value === undefined) return 0;
  if (typeof value === 'number') return value;
  const long = value as { low: number; high: number; toNumber?: () => number };
  if (typeof long.toNumber === 'function') return long.toNumber();
  return long.high * 2 ** 32 + (long.low >>> 0);
};

/** A layer's weight as the graph holds it. */
export interface LayerWeight {
  /** The module path, as in PyTorch: `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. */
  readonly module: string;
  /** The initializer that holds the weight. */
  readonly initializer: string;
  /** `MatMul` (weight stored [in, out], the transpose of PyTorch's), `Gemm` (as `transB` says) or `Conv` ([out, in, kh, kw]). */
  readonly op: 'MatMul' | 'Gemm' | 'Conv';
  /** True when the stored matrix is PyTorch's weight transposed ([in, out]). */
  readonly transposed: boolean;
  readonly dims: readonly number[];
  readonly dataType: number;
}

/**
 * The weights of a graph's linear and convolution layers by module path, read from the node names
 * the PyTorch exporter writes (`/unet/down_blocks.0/attentions.0/.../to_q/MatMul`): the names of the
 * initializers themselves are often anonymous (`onnx::MatMul_313`). `prefix` is the exported
 * module's own name (`unet`, `text_encoder`), dropped from the paths.
 */
export function layerWeights(model: OnnxModelProto, prefix: string): Map<string, LayerWeight> {
  const graph = model.graph ?? {};
  const initializers = new Map((graph.initializer ?? []).map((tensor) => [tensor.name ?? '', tensor]));
  const layers = new Map<string, LayerWeight>();
  for (const node of graph.node ?? []) {
    const op = node.opType;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Conv') continue;
    const weightName = node.input?.[1];
    const tensor = weightName === undefined ? undefined : initializers.get(weightName);
    if (tensor === undefined || node.name === undefined || node.name === '') continue;
    const parts = node.name.split('/').filter((part) => part !== '');
    if (parts[0] === prefix) parts.shift();
    parts.pop(); // the op's own name
    if (parts.length === 0) continue;
    const module = parts.join('.');
    const dims = (tensor.dims ?? []).map(toNumber);
    const transB = toNumber(node.attribute?.find((attribute) => attribute.name === 'transB')?.i);
    const transposed = op === 'MatMul' || (op === 'Gemm' && transB === 0);
    if (layers.has(module)) continue; // a module used twice (never in the UNet or text encoder)
    layers.set(module, { module, initializer: weightName!, op, transposed, dims, dataType: tensor.dataType ?? 0 });
  }
  return layers;
}
