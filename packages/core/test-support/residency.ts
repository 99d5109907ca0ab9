/**
 * GPU residency on one model: the text encoder's output (which feeds the UNet) stays in GPU memory
 * on WebGPU and is read back only on request. Used by fixture-goldens.gpu.test.ts and by
 * scripts/compare-goldens.ts, which runs it on the GPU host.
 */
import { join } from 'node:path';
import { loadModel } from '../src/model-folder/load-model.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { FIXTURES } from './goldens.js';

export interface ResidencyCheck {
  /** Runtime stats right after the encode: the output is held, and (on WebGPU) held on the GPU. */
  readonly held: { readonly tensors: number; readonly gpuTensors: number };
  /** Values read back on request. */
  readonly readBack: number;
  /** Runtime stats after the model's dispose: nothing held. */
  readonly afterDispose: { readonly tensors: number; readonly gpuTensors: number };
  readonly expectedValues: number;
}

export async function checkResidency(runtime: Runtime): Promise<ResidencyCheck> {
  const model = await loadModel({ runtime, folder: join(FIXTURES, 'models', 'tiny-sd-turbo') });
  const embeddings = await model.prompts.encode('a lighthouse');
  const { tensors, gpuTensors } = await runtime.stats();
  const readBack = (await embeddings.float32()).length;
  const expectedValues = 77 * model.capabilities.textEmbeddingWidth;
  await model.dispose();
  const after = await runtime.stats();
  return { held: { tensors, gpuTensors }, readBack, afterDispose: { tensors: after.tensors, gpuTensors: after.gpuTensors }, expectedValues };
}

/** Whether the check shows residency: one output held, on the GPU, read back whole, nothing left after dispose. */
export function residencyHolds(check: ResidencyCheck): boolean {
  return (
    check.held.tensors === 1 &&
    check.held.gpuTensors === 1 &&
    check.readBack === check.expectedValues &&
    check.afterDispose.tensors === 0 &&
    check.afterDispose.gpuTensors === 0
  );
}
