import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../runtime/runtime.js';
import { compareFixtureGoldens, GOLDEN_FIXTURES, tolerance } from '../../test-support/goldens.js';

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
});
