/**
 * Prints, per stream mode, how far our pipeline's denoised latents are from the Python original's.
 *   pnpm --filter @streamdiffusion/core compare-stream-goldens [--device cpu|webgpu]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRuntime, loadModel, type DeviceRequest } from '../src/index.js';
import { FIXTURES } from '../test-support/goldens.js';
import { compareStreamCase, readStreamGoldens, STREAM_TOLERANCE, withinStreamTolerance } from '../test-support/stream-goldens.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'cpu' } } });
const runtime = await createRuntime({ device: values.device as DeviceRequest });
const model = await loadModel({ runtime, folder: join(FIXTURES, 'models', 'tiny-sd-turbo') });
const goldens = await readStreamGoldens();
console.log(`device: ${runtime.device.device}; ${goldens.frames} calls per case, ${goldens.width}x${goldens.height}`);
let worst = 0;
let failed = 0;
try {
  for (const name of Object.keys(goldens.cases)) {
    const row = await compareStreamCase(goldens, name, model);
    worst = Math.max(worst, row.maxAbsDiff / Math.max(1, row.maxAbsReference));
    const ok = withinStreamTolerance(row);
    if (!ok) failed += 1;
    const image = row.imageMaxAbsDiff === null ? '' : `, last image ${row.imageMaxAbsDiff.toExponential(2)}`;
    console.log(`${ok ? '' : 'FAIL '}${name.padEnd(27)} max|x̂0 diff| ${row.maxAbsDiff.toExponential(2)} (max|Python| ${row.maxAbsReference.toFixed(2)}, relative ${(row.maxAbsDiff / Math.max(1, row.maxAbsReference)).toExponential(2)})${image}  [${row.reference}]`);
  }
  console.log(
    `worst relative difference ${worst.toExponential(2)}; ${failed} over the tolerance (${STREAM_TOLERANCE.relative} relative, image ${STREAM_TOLERANCE.image}, as stream-diffusion.conformance.test.ts)`,
  );
} finally {
  await model.dispose();
  await runtime.dispose();
}
process.exitCode = failed === 0 ? 0 : 1;
