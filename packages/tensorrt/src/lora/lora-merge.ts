/**
 * W' = W + Σ scaleᵢ · (αᵢ / rankᵢ) · upᵢ · downᵢ, into the weights as the ONNX graph stores them
 * (MatMul weights are PyTorch's transposed; Conv weights [out, in, kh, kw]; fp32 or fp16), computed
 * in float32 from the original weights every time, so rescaling or removing a LoRA is exact.
 */
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { float16BitsToFloat32, float32ToFloat16Bits } from '@streamdiffusion/core';
import { encodeModel, ONNX_TYPES, type LayerWeight, type OnnxTensor } from '../onnx/onnx-model.js';
import type { LoraLayer } from './lora-keys.js';
import { LoraFileError } from './safetensors.js';

/** A layer's change from one LoRA file at one scale. */
export interface ScaledLayer {
  readonly layer: LoraLayer;
  readonly scale: number;
  /** The LoRA file (for errors). */
  readonly path: string;
}

/** The original values of an initializer, as float32 (inline, or read from its external data file). */
export async function initializerValues(tensor: OnnxTensor, modelPath: string): Promise<Float32Array> {
  const type = tensor.dataType;
  if (type !== ONNX_TYPES.float && type !== ONNX_TYPES.float16) throw new Error(`initializer ${tensor.name}: element type ${type}; LoRA merges into float32 or float16 weights`);
  let bytes: Uint8Array;
  if (tensor.dataLocation === 1) {
    const entry = (key: string): string | undefined => tensor.externalData?.find((item) => item.key === key)?.value;
    const location = entry('location');
    if (location === undefined) throw new Error(`initializer ${tensor.name}: external data without a location`);
    const count = (tensor.dims ?? []).reduce<number>((product, dim) => product * Number(dim), 1);
    const length = Number(entry('length') ?? count * (type === ONNX_TYPES.float ? 4 : 2));
    const file = await open(join(dirname(modelPath), location), 'r');
    try {
      bytes = new Uint8Array(length);
      await file.read(bytes, 0, length, Number(entry('offset') ?? 0));
    } finally {
      await file.close();
    }
  } else if (tensor.rawData !== undefined && tensor.rawData.byteLength > 0) {
    bytes = new Uint8Array(tensor.rawData); // a copy, aligned (rawData is a view into the file)
  } else {
    return Float32Array.from(tensor.floatData ?? []);
  }
  return type === ONNX_TYPES.float ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) : float16BitsToFloat32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
}

/** The initializer's bytes for float32 values, in its element type. */
export function initializerBytes(values: Float32Array, dataType: number): Uint8Array {
  const typed = dataType === ONNX_TYPES.float16 ? float32ToFloat16Bits(values) : values;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The layer's shape as PyTorch has it, `[out, in·kh·kw]`, checked against each change's LoRA (a mismatch names the file). */
function checkedShape(base: Float32Array, weight: LayerWeight, changes: readonly ScaledLayer[]): { readonly out: number; readonly inner: number } {
  // PyTorch's layout: [out, in·kh·kw]; a transposed (MatMul) store is [in, out].
  const out = weight.transposed ? weight.dims[1]! : weight.dims[0]!;
  const inner = base.length / out;
  for (const { layer, path } of changes) {
    const rank = layer.down.shape[0]!;
    if (layer.up.shape[1] !== rank || layer.down.data.length / rank !== inner || layer.up.data.length / rank !== out) {
      throw new LoraFileError({
        path,
        problem: `${layer.component} layer ${layer.module}: its LoRA has down [${layer.down.shape.join(', ')}] and up [${layer.up.shape.join(', ')}], which do not make the model's weight [${weight.transposed ? [...weight.dims].reverse().join(', ') : weight.dims.join(', ')}] (a LoRA for another model?)`,
      });
    }
  }
  return { out, inner };
}

/**
 * The layers' changes as one product `a · b` in the weight's stored layout (`[rows, cols]` of the
 * initializer): every LoRA's rank stacked, its scale·α/rank folded into `a`. Non-transposed:
 * a = factor·up [out, Σr], b = down [Σr, in]; transposed (MatMul [in, out]): a = downᵀ [in, Σr],
 * b = (factor·up)ᵀ [Σr, out].
 */
export function lowRankFactors(base: Float32Array, weight: LayerWeight, changes: readonly ScaledLayer[]): { readonly a: Float32Array; readonly b: Float32Array; readonly rows: number; readonly cols: number; readonly rank: number } {
  const { out, inner } = checkedShape(base, weight, changes);
  const rank = changes.reduce((total, { layer }) => total + layer.down.shape[0]!, 0);
  const [rows, cols] = weight.transposed ? [inner, out] : [out, inner];
  const a = new Float32Array(rows * rank);
  const b = new Float32Array(rank * cols);
  let offset = 0;
  for (const { layer, scale } of changes) {
    const r = layer.down.shape[0]!;
    const factor = (scale * layer.alpha) / r;
    const { data: up } = layer.up;
    const { data: down } = layer.down;
    for (let j = 0; j < r; j += 1) {
      if (weight.transposed) {
        for (let k = 0; k < inner; k += 1) a[k * rank + offset + j] = down[j * inner + k]!;
        for (let o = 0; o < out; o += 1) b[(offset + j) * out + o] = factor * up[o * r + j]!;
      } else {
        for (let o = 0; o < out; o += 1) a[o * rank + offset + j] = factor * up[o * r + j]!;
        b.set(down.subarray(j * inner, (j + 1) * inner), (offset + j) * inner);
      }
    }
    offset += r;
  }
  return { a, b, rows, cols, rank };
}

/** Adds the layers' changes to `base` (a copy is returned), laid out as `weight` stores it: `base + a · b` in JavaScript. */
export function mergeInto(base: Float32Array, weight: LayerWeight, changes: readonly ScaledLayer[]): Float32Array {
  const { a, b, rows, cols, rank } = lowRankFactors(base, weight, changes);
  const merged = base.slice();
  // Row by row, the inner loop along memory (a strided loop is ~10× slower on big layers).
  for (let i = 0; i < rows; i += 1) {
    const target = i * cols;
    for (let r = 0; r < rank; r += 1) {
      const factor = a[i * rank + r]!;
      if (factor === 0) continue;
      const row = r * cols;
      for (let j = 0; j < cols; j += 1) merged[target + j]! += factor * b[row + j]!;
    }
  }
  return merged;
}

/**
 * The ONNX graph that merges on an onnxruntime device: y = Cast(w + MatMul(a, b), T) for a weight of
 * element type T, every dim symbolic so one session serves every layer. Inputs: w float32
 * [rows, cols], a float32 [rows, rank], b float32 [rank, cols]; output y.
 */
export function mergeGraph(dataType: number): Uint8Array {
  const value = (name: string, type: number, dims: readonly string[]) => ({ name, type: { tensorType: { elemType: type, shape: { dim: dims.map((dimParam) => ({ dimParam })) } } } });
  const float = ONNX_TYPES.float;
  const sum = dataType === float ? 'y' : 'sum';
  const node = [
    { opType: 'MatMul', input: ['a', 'b'], output: ['delta'], name: 'delta' },
    { opType: 'Add', input: ['w', 'delta'], output: [sum], name: 'add' },
    // AttributeProto type 2 is INT.
    ...(dataType === float ? [] : [{ opType: 'Cast', input: [sum], output: ['y'], name: 'cast', attribute: [{ name: 'to', type: 2, i: dataType }] }]),
  ];
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: '@streamdiffusion/tensorrt',
    graph: { name: 'lora_merge', node, input: [value('w', float, ['rows', 'cols']), value('a', float, ['rows', 'rank']), value('b', float, ['rank', 'cols'])], output: [value('y', dataType, ['rows', 'cols'])] },
  });
}
