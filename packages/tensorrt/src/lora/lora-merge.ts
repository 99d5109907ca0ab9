/**
 * W' = W + Σ scaleᵢ · (αᵢ / rankᵢ) · upᵢ · downᵢ, into the weights as the ONNX graph stores them
 * (MatMul weights are PyTorch's transposed; Conv weights [out, in, kh, kw]; fp32 or fp16), computed
 * in float32 from the original weights every time, so rescaling or removing a LoRA is exact.
 */
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { float16BitsToFloat32, float32ToFloat16Bits } from '@streamdiffusion/core';
import { ONNX_TYPES, type LayerWeight, type OnnxTensor } from '../onnx/onnx-model.js';
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

/** Adds the layers' changes to `base` (a copy is returned), laid out as `weight` stores it. */
export function mergeInto(base: Float32Array, weight: LayerWeight, changes: readonly ScaledLayer[]): Float32Array {
  const merged = base.slice();
  // PyTorch's layout: [out, in·kh·kw]; a transposed (MatMul) store is [in, out].
  const out = weight.transposed ? weight.dims[1]! : weight.dims[0]!;
  const inner = base.length / out;
  for (const { layer, scale, path } of changes) {
    const rank = layer.down.shape[0]!;
    const downInner = layer.down.data.length / rank;
    const upOut = layer.up.data.length / rank;
    if (layer.up.shape[1] !== rank || downInner !== inner || upOut !== out) {
      throw new LoraFileError({
        path,
        problem: `${layer.component} layer ${layer.module}: its LoRA has down [${layer.down.shape.join(', ')}] and up [${layer.up.shape.join(', ')}], which do not make the model's weight [${weight.transposed ? [...weight.dims].reverse().join(', ') : weight.dims.join(', ')}] (a LoRA for another model?)`,
      });
    }
    const factor = (scale * layer.alpha) / rank;
    const { data: up } = layer.up;
    const { data: down } = layer.down;
    // Inner loops run along memory in both layouts (a strided loop is ~10× slower on big layers).
    if (weight.transposed) {
      // merged[k, o] += Σr down[r, k] · up[o, r]: up transposed once to [rank, out].
      const upT = new Float32Array(rank * out);
      for (let o = 0; o < out; o += 1) for (let r = 0; r < rank; r += 1) upT[r * out + o] = factor * up[o * rank + r]!;
      for (let k = 0; k < inner; k += 1) {
        const target = k * out;
        for (let r = 0; r < rank; r += 1) {
          const d = down[r * inner + k]!;
          if (d === 0) continue;
          const row = r * out;
          for (let o = 0; o < out; o += 1) merged[target + o]! += d * upT[row + o]!;
        }
      }
    } else {
      for (let o = 0; o < out; o += 1) {
        const target = o * inner;
        for (let r = 0; r < rank; r += 1) {
          const u = factor * up[o * rank + r]!;
          if (u === 0) continue;
          const row = r * inner;
          for (let k = 0; k < inner; k += 1) merged[target + k]! += u * down[row + k]!;
        }
      }
    }
  }
  return merged;
}
