import { describe, expect, it } from 'vitest';
import { createRuntime } from '../runtime/runtime.js';
import { compareFixtureGoldens, GOLDEN_FIXTURES, tolerance } from '../../test-support/goldens.js';

// Runs on a GPU host only: set STREAMDIFFUSION_GPU=1 (and have a Vulkan driver). Elsewhere it is
// reported as skipped, never as passed.
const onGpu = process.env.STREAMDIFFUSION_GPU === '1';

describe.skipIf(!onGpu)('fixture models match their PyTorch goldens on WebGPU (skipped: set STREAMDIFFUSION_GPU=1 on a GPU host)', () => {
  for (const fixture of GOLDEN_FIXTURES) {
    it(`${fixture.name} (${fixture.dtype})`, async () => {
      const runtime = await createRuntime({ device: 'webgpu' });
      try {
        const { atol, rtol } = tolerance(fixture.dtype, 'webgpu');
        for (const comparison of await compareFixtureGoldens(runtime, fixture.name)) {
          expect(comparison.maxAbsDiff, `${comparison.model}/${comparison.output}`).toBeLessThanOrEqual(atol + rtol * comparison.maxAbsReference);
        }
      } finally {
        await runtime.dispose();
      }
    });
  }
});
