/**
 * Reads the PyTorch goldens that `tools/export goldens` records for each fixture model folder, runs
 * the same inputs through our runtime and measures the difference. Used by the golden tests (CPU in
 * CI, WebGPU on a GPU host) and by `scripts/compare-goldens.ts`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { float16BitsToFloat32 } from '../src/runtime/dtypes.js';
import { hostTensor, type HostTensor } from '../src/runtime/host-tensor.js';
import { loadModel } from '../src/model-folder/load-model.js';
import type { Runtime } from '../src/runtime/runtime.js';

/** The repository's fixtures folder (`STREAMDIFFUSION_FIXTURES` overrides it, e.g. for bundled runs). */
export const FIXTURES = process.env.STREAMDIFFUSION_FIXTURES ?? fileURLToPath(new URL('../../../fixtures/', import.meta.url));

/** Fixture model folders with goldens, and the precision each was exported in. */
export const GOLDEN_FIXTURES = Object.freeze([
  { name: 'tiny-sd-turbo', dtype: 'fp32' },
  { name: 'tiny-sd15-fp16', dtype: 'fp16' },
] as const);

interface GoldenTensor {
  readonly dtype: string;
  readonly dims: number[];
  readonly data: string;
}

/** A goldens file as `tools/export goldens` writes it. */
export interface GoldenFile {
  readonly models: Record<string, { inputs: Record<string, GoldenTensor>; outputs: Record<string, GoldenTensor> }>;
}

/** A golden tensor as a host tensor. */
export function decodeGolden(tensor: GoldenTensor): HostTensor {
  const bytes = Buffer.from(tensor.data, 'base64');
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (tensor.dtype) {
    case 'float32':
      return hostTensor(new Float32Array(buffer), tensor.dims);
    case 'float16':
      return hostTensor(new Uint16Array(buffer), tensor.dims);
    case 'int32':
      return hostTensor(new Int32Array(buffer), tensor.dims);
    case 'int64':
      return hostTensor(new BigInt64Array(buffer), tensor.dims);
    default:
      throw new Error(`golden dtype ${tensor.dtype} is not supported`);
  }
}

/**
 * Reads a JSON file of `fixtures/goldens/`, decompressing it first when its name ends in `.gz`: the
 * goldens of mostly float data are stored gzip-compressed to keep the fixtures inside their budget.
 */
export async function readGoldenJson(fileName: string): Promise<unknown> {
  const bytes = await readFile(join(FIXTURES, 'goldens', fileName));
  return JSON.parse((fileName.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8'));
}

/** Reads the goldens file of a fixture (`goldens/<fixture>.json.gz`). */
export async function readGoldens(fixture: string): Promise<GoldenFile & { prompts?: string[] }> {
  return (await readGoldenJson(`${fixture}.json.gz`)) as GoldenFile & { prompts?: string[] };
}

/** One output compared: the largest absolute difference and the largest reference magnitude. */
export interface GoldenComparison {
  readonly fixture: string;
  readonly model: string;
  readonly output: string;
  readonly elements: number;
  readonly maxAbsDiff: number;
  readonly maxAbsReference: number;
}

/** Runs every model of a fixture folder on the golden inputs and compares with PyTorch's outputs. */
export async function compareFixtureGoldens(runtime: Runtime, fixture: string): Promise<GoldenComparison[]> {
  const goldens = await readGoldens(fixture);
  const model = await loadModel({ runtime, folder: join(FIXTURES, 'models', fixture) });
  const comparisons: GoldenComparison[] = [];
  try {
    for (const [component, golden] of Object.entries(goldens.models)) {
      const inputs = Object.fromEntries(Object.entries(golden.inputs).map(([name, tensor]) => [name, decodeGolden(tensor)]));
      const outputNames = Object.keys(golden.outputs);
      const outputs = await model.sessions.run(component as 'unet', inputs, { read: outputNames });
      for (const name of outputNames) {
        const reference = decodeGolden(golden.outputs[name]!);
        const expected = reference.type === 'float16' ? float16BitsToFloat32(reference.data as Uint16Array) : (reference.data as Float32Array);
        const actual = await outputs[name]!.float32();
        if (actual.length !== expected.length) throw new Error(`${fixture}/${component}/${name}: ${actual.length} elements, golden has ${expected.length}`);
        let maxAbsDiff = 0;
        let maxAbsReference = 0;
        for (let index = 0; index < expected.length; index += 1) {
          maxAbsDiff = Math.max(maxAbsDiff, Math.abs(actual[index]! - expected[index]!));
          maxAbsReference = Math.max(maxAbsReference, Math.abs(expected[index]!));
        }
        if (Number.isNaN(actual.reduce((sum, value) => sum + value, 0))) maxAbsDiff = Number.NaN;
        comparisons.push({ fixture, model: component, output: name, elements: expected.length, maxAbsDiff, maxAbsReference });
      }
    }
  } finally {
    await model.dispose();
  }
  return comparisons;
}

/**
 * The tolerance we hold each comparison to: |ours − PyTorch| ≤ atol + rtol · max|PyTorch|.
 * fp32 on the CPU: 1e-4 + 1e-4·scale (reordered float sums). fp32 on a GPU: 1e-3 + 1e-3·scale.
 * fp16 models against the fp32 PyTorch reference: 1e-2 + 1e-2·scale (half precision keeps ~3 digits).
 */
export function tolerance(dtype: 'fp32' | 'fp16', device: string): { atol: number; rtol: number } {
  if (dtype === 'fp16') return { atol: 1e-2, rtol: 1e-2 };
  return device === 'cpu' ? { atol: 1e-4, rtol: 1e-4 } : { atol: 1e-3, rtol: 1e-3 };
}
