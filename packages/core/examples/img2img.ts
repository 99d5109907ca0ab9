/**
 * img2img with StreamDiffusion on an image, written to a PNG, in a page of code: the library's API
 * as a program uses it (the `streamdiffusion img2img` command does the same job from the shell).
 *
 *   pnpm example                                     # the bundled tiny model and example image
 *   pnpm example -- --model <folder> --image in.jpg --out out.png --device webgpu --prompt "a cat" --size 512 [--frames 30]
 *
 * `--frames N` runs N calls (at least n, the warm-up) and prints the median time of the warm ones.
 *
 * With the tiny bundled model the weights are random: the output shows the pipeline runs end to
 * end, not a pretty picture. A real SD-Turbo folder made by tools/export gives real images.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRuntime, createStreamDiffusion, loadModel, writeImage, type DeviceRequest, type StreamDiffusionResult } from '../src/index.js';

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));
// pnpm runs scripts in the package folder; paths given by the user are relative to where they typed.
const cwd = process.env.INIT_CWD ?? process.cwd();
const { values } = parseArgs({
  args: process.argv.slice(2).filter((argument) => argument !== '--'),
  options: {
    model: { type: 'string', default: here('../../../fixtures/models/tiny-sd-turbo') },
    image: { type: 'string', default: here('../../../fixtures/images/example.png') },
    out: { type: 'string', default: 'out/img2img.png' },
    device: { type: 'string', default: 'auto' },
    prompt: { type: 'string', default: 'a watercolor painting of a lighthouse at dawn' },
    size: { type: 'string', default: '128' },
    steps: { type: 'string', default: '32,45' },
    frames: { type: 'string', default: '0' },
  },
});

const size = Number(values.size);
const tIndexList = values.steps.split(',').map(Number);
const runtime = await createRuntime({ device: values.device as DeviceRequest });
console.log(`device: ${runtime.device.device} — ${runtime.device.reason}`);
try {
  const model = await loadModel({ runtime, folder: resolve(cwd, values.model) });
  const stream = await createStreamDiffusion({ model, prompt: values.prompt, tIndexList, width: size, height: size });
  // The first n − 1 calls fill the denoising buffer (warm-up); the n-th output has been through every step.
  let result: StreamDiffusionResult | undefined;
  const calls = Math.max(tIndexList.length, Number(values.frames));
  const warmTimes: number[] = [];
  for (let call = 0; call < calls; call += 1) {
    const started = performance.now();
    result = await stream.img2img(resolve(cwd, values.image));
    const elapsed = performance.now() - started;
    if (result.warm && call > 0) warmTimes.push(elapsed);
    if (call < 4 || call === calls - 1) console.log(`frame ${call + 1}: ${elapsed.toFixed(1)} ms${result.warm ? '' : ' (warm-up)'}`);
  }
  if (warmTimes.length > 1) {
    warmTimes.sort((a, b) => a - b);
    console.log(`median of ${warmTimes.length} warm frames: ${warmTimes[Math.floor(warmTimes.length / 2)]!.toFixed(1)} ms (decode image file → encode → UNet → decode → pixels)`);
  }
  const out = resolve(cwd, values.out);
  await mkdir(dirname(out), { recursive: true });
  const image = result?.images[0];
  if (image === undefined) throw new Error('no frame was processed');
  await writeImage(out, image);
  console.log(`wrote ${out} (${size}x${size}, t_index_list [${tIndexList.join(', ')}], prompt "${values.prompt}")`);
  await model.dispose();
} finally {
  await runtime.dispose();
}
