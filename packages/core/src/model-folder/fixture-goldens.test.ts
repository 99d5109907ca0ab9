import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../runtime/runtime.js';
import { join } from 'node:path';
import { compareFixtureGoldens, decodeGolden, FIXTURES, GOLDEN_FIXTURES, readGoldens, tolerance } from '../../test-support/goldens.js';
import { loadModel } from './load-model.js';

// The fixture models reproduce the outputs PyTorch gave for the same weights and inputs
// (goldens recorded by tools/export; see fixtures/README.md).
describe('fixture models match their PyTorch goldens on the CPU', () => {
  let runtime: Runtime;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  for (const fixture of GOLDEN_FIXTURES) {
    it(`${fixture.name} (${fixture.dtype})`, async () => {
      const comparisons = await compareFixtureGoldens(runtime, fixture.name);
      expect([...new Set(comparisons.map((comparison) => comparison.model))].sort()).toEqual(['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);
      const { atol, rtol } = tolerance(fixture.dtype, 'cpu');
      for (const comparison of comparisons) {
        expect(comparison.maxAbsReference, `${comparison.model} golden is not all zeros`).toBeGreaterThan(0);
        expect(comparison.maxAbsDiff, `${comparison.model}/${comparison.output}`).toBeLessThanOrEqual(atol + rtol * comparison.maxAbsReference);
      }
    });
  }

  it('turns a prompt into the [1, 77, D] embeddings PyTorch gave for it (tokenizer + text encoder)', async () => {
    const goldens = await readGoldens('tiny-sd-turbo');
    const prompt = goldens.prompts?.[0];
    expect(prompt).toBeTypeOf('string');
    const golden = goldens.models.text_encoder!;
    const ids = decodeGolden(golden.inputs.input_ids!).data as Int32Array;
    const hidden = decodeGolden(golden.outputs.last_hidden_state!).data as Float32Array;
    const model = await loadModel({ runtime, folder: join(FIXTURES, 'models', 'tiny-sd-turbo') });
    try {
      expect(Array.from(model.prompts.tokenize(prompt!))).toEqual(Array.from(ids.subarray(0, 77)));
      const embeddings = await model.prompts.encode(prompt!);
      expect(embeddings.dims).toEqual([1, 77, model.capabilities.textEmbeddingWidth]);
      const values = await embeddings.float32();
      let maxAbsDiff = 0;
      for (const [index, value] of values.entries()) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(value - hidden[index]!));
      expect(maxAbsDiff).toBeLessThan(1e-4);
      await embeddings.dispose();
    } finally {
      await model.dispose();
    }
  });
});
