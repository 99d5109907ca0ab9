import { describe, expect, it } from 'vitest';
import { useTinyModel } from '../../test-support/tiny-model.js';
import { compareStreamCase, readStreamGoldens, STREAM_TOLERANCE } from '../../test-support/stream-goldens.js';

// Conformance with the Python original: fixtures/goldens/stream-diffusion.json.gz holds what
// cumulo-autumn/StreamDiffusion's own StreamDiffusion class computed (float32, CPU) on the same tiny
// weights and frames; for frame_buffer_size 2, the original with its f > 1 bugs fixed (see
// tools/export/streamdiffusion_export/stream_goldens.py).
// Tolerance (STREAM_TOLERANCE): |ours − Python| ≤ 1e-4 · max(1, max|Python|) over every x̂0 of all
// 8 calls; the decoded image ≤ 1e-4.
describe('StreamDiffusion equals the Python original on the tiny model', async () => {
  const goldens = await readStreamGoldens();
  const tiny = useTinyModel();

  for (const name of Object.keys(goldens.cases)) {
    it(`${name} (${goldens.cases[name]!.reference})`, async () => {
      const comparison = await compareStreamCase(goldens, name, tiny.model);
      expect(comparison.maxAbsReference).toBeGreaterThan(0);
      expect(comparison.maxAbsDiff, `max |x̂0 − Python|, max |Python| ${comparison.maxAbsReference.toFixed(2)}`).toBeLessThanOrEqual(
        STREAM_TOLERANCE.relative * Math.max(1, comparison.maxAbsReference),
      );
      if (comparison.imageMaxAbsDiff !== null) expect(comparison.imageMaxAbsDiff).toBeLessThanOrEqual(STREAM_TOLERANCE.image);
    });
  }
});
