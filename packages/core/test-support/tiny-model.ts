/**
 * One CPU runtime with the tiny-sd-turbo fixture loaded, for a test file's describe block:
 * `const tiny = useTinyModel();` then `tiny.model` and `tiny.runtime` inside the tests.
 */
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { loadModel, type LoadedModel } from '../src/model-folder/load-model.js';
import { createRuntime, type Runtime } from '../src/runtime/runtime.js';
import { FIXTURES } from './goldens.js';

export function useTinyModel(): { readonly runtime: Runtime; readonly model: LoadedModel } {
  let runtime: Runtime | undefined;
  let model: LoadedModel | undefined;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: join(FIXTURES, 'models', 'tiny-sd-turbo') });
  });
  afterAll(async () => {
    await model?.dispose();
    await runtime?.dispose();
  });
  const loaded = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useTinyModel: used outside a test');
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
