/**
 * Prints how far our runtime's outputs are from the PyTorch goldens of every fixture model, and on
 * WebGPU whether an output that feeds another model stays in GPU memory (test-support/residency.ts).
 *   pnpm --filter @streamdiffusion/core compare-goldens [--device cpu|webgpu|cuda|auto] [--json]
 */
import { parseArgs } from 'node:util';
import { createRuntime, type DeviceRequest } from '../src/index.js';
import { compareFixtureGoldens, GOLDEN_FIXTURES, tolerance } from '../test-support/goldens.js';
import { checkResidency, residencyHolds, type ResidencyCheck } from '../test-support/residency.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'cpu' }, json: { type: 'boolean', default: false } } });
const runtime = await createRuntime({ device: values.device as DeviceRequest });
let worst = 0;
let failed = 0;
const rows = [];
let residency: (ResidencyCheck & { ok: boolean }) | undefined;
try {
  for (const fixture of GOLDEN_FIXTURES) {
    const { atol, rtol } = tolerance(fixture.dtype, runtime.device.device);
    for (const comparison of await compareFixtureGoldens(runtime, fixture.name)) {
      const allowed = atol + rtol * comparison.maxAbsReference;
      const ok = comparison.maxAbsDiff <= allowed;
      if (!ok) failed += 1;
      worst = Math.max(worst, comparison.maxAbsDiff);
      rows.push({ ...comparison, allowed, ok });
    }
  }
  if (runtime.device.device === 'webgpu') {
    const check = await checkResidency(runtime);
    const ok = residencyHolds(check);
    if (!ok) failed += 1;
    residency = { ...check, ok };
  }
} finally {
  await runtime.dispose();
}
if (values.json) {
  console.log(JSON.stringify({ device: runtime.device, rows, residency, worst, failed }, null, 2));
} else {
  console.log(`device: ${runtime.device.device} (${runtime.device.reason})`);
  for (const row of rows) {
    console.log(
      `${row.ok ? 'ok  ' : 'FAIL'} ${row.fixture}/${row.model}/${row.output}: max|diff| ${row.maxAbsDiff.toExponential(3)} (allowed ${row.allowed.toExponential(2)}, max|ref| ${row.maxAbsReference.toFixed(3)}, ${row.elements} values)`,
    );
  }
  if (residency !== undefined) {
    console.log(
      `${residency.ok ? 'ok  ' : 'FAIL'} residency: text encoder output held ${residency.held.tensors}, on the GPU ${residency.held.gpuTensors}; read back ${residency.readBack} of ${residency.expectedValues} values; held after dispose ${residency.afterDispose.tensors}`,
    );
  }
  console.log(`worst max|diff| ${worst.toExponential(3)}; ${failed} failed`);
}
process.exitCode = failed === 0 ? 0 : 1;
