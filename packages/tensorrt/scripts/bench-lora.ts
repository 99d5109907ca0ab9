/**
 * Hot LoRA timings: a pipeline streams frames while a LoRA is applied, rescaled and taken out on
 * its model; prints each step's timings (read, merge, encode, reload) and the frames around it.
 *
 *   pnpm --filter @streamdiffusion/tensorrt bench:lora -- --model fixtures/models/tiny-sd-turbo \
 *     --lora fixtures/loras/kohya.safetensors --device cpu --size 64
 */
import { parseArgs } from 'node:util';
import { createRuntime, createStreamDiffusion, loadModel, type RgbImage } from '@streamdiffusion/core';
import { createHotLora, type LoraEntry } from '../src/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fixtures/models/tiny-sd-turbo' },
    lora: { type: 'string', default: 'fixtures/loras/kohya.safetensors' },
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
const frame: RgbImage = { data: new Uint8Array(size * size * 3).map((_, index) => (index * 7) % 256), width: size, height: size, channels: 3 };
const frameMs = async (): Promise<number[]> => {
  const times: number[] = [];
  for (let index = 0; index < frames; index += 1) {
    const started = performance.now();
    await stream.img2img(frame);
    times.push(performance.now() - started);
  }
  return times;
};
const round = (ms: number): number => Math.round(ms * 10) / 10;
const median = (times: number[]): number => [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;

console.log(`device ${runtime.device.device} (${runtime.device.reason}); model ${values.model} loaded in ${round(loadMs)} ms; ${size}×${size}`);
await frameMs(); // warm-up
console.log(`frames before: median ${round(median(await frameMs()))} ms`);
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
  const after = await frameMs();
  const layers = report.layers.map((entry) => `${entry.unet} UNet + ${entry.text_encoder} text-encoder layers`).join(', ') || 'none';
  console.log(
    `${name.padEnd(16)} total ${String(round(report.timings.total)).padStart(8)} ms (read ${round(report.timings.read)}, merge ${round(report.timings.merge)}, encode ${round(report.timings.encode)}, reload ${round(report.timings.reload)}); reloaded [${report.reloaded.join(', ')}]; ${layers}; next frame ${round(after[0]!)} ms, then median ${round(median(after.slice(1)))} ms`,
  );
}
await stream.dispose();
await model.dispose();
await runtime.dispose();
