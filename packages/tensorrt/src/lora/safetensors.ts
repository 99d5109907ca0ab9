/**
 * Reads `.safetensors` files: an 8-byte little-endian header length, a JSON header (name → dtype,
 * shape, byte offsets), then the tensors' bytes. Hand-written because no maintained npm package
 * reads local safetensors files (the format is this small); tensors come back as float32.
 */
import { readFile } from 'node:fs/promises';
import { float16BitsToFloat32, StreamDiffusionError } from '@streamdiffusion/core';

/** A file we cannot read as safetensors, or whose tensors are not what a LoRA holds. */
export class LoraFileError extends StreamDiffusionError {
  readonly path: string;

  constructor(options: { path: string; problem: string; cause?: unknown }) {
    super({ code: 'lora-file', message: `${options.path}: ${options.problem}`, ...(options.cause === undefined ? {} : { cause: options.cause }) });
    this.path = options.path;
  }
}

export interface SafetensorsTensor {
  readonly shape: readonly number[];
  /** The values, converted to float32. */
  readonly data: Float32Array;
}

export interface Safetensors {
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
  /** The header's `__metadata__` (string → string), e.g. kohya's `ss_network_dim`. */
  readonly metadata: Readonly<Record<string, string>>;
}

const BYTES = { F32: 4, F16: 2, BF16: 2, F64: 8 } as const;

function toFloat32(dtype: keyof typeof BYTES, bytes: Uint8Array): Float32Array {
  // Copied to an aligned buffer of its own first: tensor offsets in the file need not be aligned
  // (and a Buffer's slice() would be a view).
  const copy = new Uint8Array(bytes);
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    case 'F64':
      return Float32Array.from(new Float64Array(copy.buffer, 0, copy.byteLength / 8));
    case 'F16':
      return float16BitsToFloat32(new Uint16Array(copy.buffer, 0, copy.byteLength / 2));
    case 'BF16': {
      const bits = new Uint16Array(copy.buffer, 0, copy.byteLength / 2);
      const words = new Uint32Array(bits.length);
      for (let index = 0; index < bits.length; index += 1) words[index] = bits[index]! << 16;
      return new Float32Array(words.buffer);
    }
  }
}

/** Parses safetensors bytes (`path` names the file in errors). */
export function parseSafetensors(bytes: Uint8Array, path: string): Safetensors {
  const fail = (problem: string): never => {
    throw new LoraFileError({ path, problem });
  };
  if (bytes.byteLength < 8) fail(`not a safetensors file (${bytes.byteLength} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.byteLength - 8) fail(`not a safetensors file (a header of ${headerLength} bytes in a file of ${bytes.byteLength})`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, unknown>;
  } catch (error) {
    return fail(`not a safetensors file (its header is not JSON: ${(error as Error).message})`);
  }
  const data = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, SafetensorsTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in BYTES)) fail(`tensor ${name} is ${dtype}; a LoRA's tensors are F32, F16, BF16 or F64`);
    const size = BYTES[dtype as keyof typeof BYTES];
    const count = shape.reduce((product, dim) => product * dim, 1);
    if (offsets[1] - offsets[0] !== count * size || offsets[1] > data.byteLength) fail(`tensor ${name}: ${offsets[1] - offsets[0]} bytes at ${offsets[0]} for ${dtype} [${shape.join(', ')}] (the file is cut short or corrupt)`);
    tensors.set(name, { shape, data: toFloat32(dtype as keyof typeof BYTES, data.subarray(offsets[0], offsets[1])) });
  }
  return { tensors, metadata };
}

/** The error for a LoRA file that cannot be read (its system error's code, else its message). */
export const unreadableLoraFile = (path: string, error: unknown): LoraFileError =>
  new LoraFileError({ path, problem: `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, cause: error });

/** A file's bytes, or a LoraFileError naming it. */
export async function readSafetensorsBytes(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (error) {
    throw unreadableLoraFile(path, error);
  }
}

export async function readSafetensors(path: string): Promise<Safetensors> {
  return parseSafetensors(await readSafetensorsBytes(path), path);
}
