/**
 * CPU runtimes with a fixture model loaded, for a test file's describe block:
 * `const tiny = useTinyModel();` then `tiny.model` and `tiny.runtime` inside the tests.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { loadModel, type LoadedModel } from '../src/model-folder/load-model.js';
import { createRuntime, type Runtime } from '../src/runtime/runtime.js';
import { FIXTURES } from './goldens.js';

interface LoadedFixture {
  readonly runtime: Runtime;
  readonly model: LoadedModel;
}

/** Loads the folder `prepare` gives before the block's tests and releases it (and `cleanup`) after. */
function useModelFolder(prepare: () => Promise<{ folder: string; cleanup?: () => Promise<void> }>): LoadedFixture {
  let runtime: Runtime | undefined;
  let model: LoadedModel | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const prepared = await prepare();
    cleanup = prepared.cleanup;
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: prepared.folder });
  });
  afterAll(async () => {
    await model?.dispose();
    await runtime?.dispose();
    await cleanup?.();
  });
  const loaded = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('a fixture model was used outside a test');
    return value;
  };
  return {
    get runtime() {
      return loaded(runtime);
    },
    get model() {
      return loaded(model);
    },
  };
}

/** The tiny-sd-turbo fixture. */
export function useTinyModel(): LoadedFixture {
  return useModelFolder(async () => ({ folder: join(FIXTURES, 'models', 'tiny-sd-turbo') }));
}

const WRAPPER_UNET = fileURLToPath(new URL('../test-fixtures/wrappers/wrapper-unet.onnx', import.meta.url));

/**
 * The tiny-sd-turbo fixture with its UNet swapped for `test-fixtures/wrappers/wrapper-unet.onnx`
 * (one extra input `extra_residual`, 77 + 1 prompt tokens, out_sample = extra_residual + mean of
 * token 77), in a temporary copy: for the wrapper composition tests.
 */
export function useWrapperModel(): LoadedFixture {
  return useModelFolder(async () => {
    const folder = await mkdtemp(join(tmpdir(), 'sd-wrapper-model-'));
    await cp(join(FIXTURES, 'models', 'tiny-sd-turbo'), folder, { recursive: true });
    await cp(WRAPPER_UNET, join(folder, 'unet', 'model.onnx'));
    return { folder, cleanup: () => rm(folder, { recursive: true, force: true }) };
  });
}
