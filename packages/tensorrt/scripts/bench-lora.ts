/**
 * Hot LoRA timings: a pipeline streams frames while a LoRA is applied, rescaled and taken out on
 * its model; prints each step's timings (read, merge, encode, reload) and the frames around it.
 *
 *   pnpm --filter @streamdiffusion/tensorrt bench:lora -- --model fixtures/models/tiny-sd-turbo \
 *     --lora fixtures/loras/kohya.safetensors --device cpu --size 64
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRuntime, createStreamDiffusion, loadModel, measureStream, movingPattern } from '@streamdiffusion/core';
import { createHotLora, type LoraEntry } from '../src/index.js';

const fixture = (path: string): string => fileURLToPath(new URL(`../../../fixtures/${path}`, import.meta.url));
const { values } = parseArgs({
  // pnpm passes the `--` of `bench:lora -- --model …` through.
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    model: { type: 'string', default: fixture('models/tiny-sd-turbo') },
    lora: { type: 'string', default: fixture('loras/kohya.safetensors') },
    device: { type: 'string', default: 'cpu' },
    size: { type: 'string', default: '64' },
    frames: { type: 'string', default: '5' },
  },
});
const size = Number(values.size);
const frames = Number(values.frames);
const runtime = await createRuntime({ device: values.device as 'cpu' });
const loadStarted = performance.now();
const model = await loadModel({ runtime, folder: values.model });
const loadMs = performance.now() - loadStarted;
const stream = await createStreamDiffusion({ model, width: size, height: size, tIndexList: [32, 45], cfgType: 'none', prompt: 'a lighthouse in a storm' });
/** The first frame (right after a change) and the median of the next `frames`, through core's measureStream. */
const framesAfter = async (): Promise<{ first: number; median: number }> => {
  const measured = await measureStream({ runtime, call: async (index) => await stream.img2img(movingPattern(index, size, size)), frames, warmup: 1 });
  return { first: measured.firstCallMs, median: measured.latencyMs.p50 };
};
const round = (ms: number): number => Math.round(ms * 10) / 10;

console.log(`device ${runtime.device.device} (${runtime.device.reason}); model ${values.model} loaded in ${round(loadMs)} ms; ${size}×${size}`);
console.log(`frames before: median ${round((await framesAfter()).median)} ms`);
const t0 = performance.now();
const lora = await createHotLora(model, { log: (line) => console.error(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`) });
console.log(`hot LoRA ready (both networks read and indexed) in ${round(performance.now() - t0)} ms`);
const steps: [string, LoraEntry[]][] = [
  ['apply (scale 1)', [{ path: values.lora, scale: 1 }]],
  ['rescale (0.5)', [{ path: values.lora, scale: 0.5 }]],
  ['same set again', [{ path: values.lora, scale: 0.5 }]],
  ['remove', []],
];
for (const [name, set] of steps) {
  const report = await lora.apply(set);
  const after = await framesAfter();
  const layers = report.layers.map((entry) => `${entry.unet} UNet + ${entry.text_encoder} text-encoder layers`).join(', ') || 'none';
  console.log(
    `${name.padEnd(16)} total ${String(round(report.timings.total)).padStart(8)} ms (read ${round(report.timings.read)}, merge ${round(report.timings.merge)}, encode ${round(report.timings.encode)}, reload ${round(report.timings.reload)}); reloaded [${report.reloaded.join(', ')}]; ${layers}; next frame ${round(after.first)} ms, then median ${round(after.median)} ms`,
  );
}
await stream.dispose();
await model.dispose();
await runtime.dispose();
