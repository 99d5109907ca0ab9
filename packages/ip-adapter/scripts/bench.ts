/**
 * `pnpm --filter @streamdiffusion/ip-adapter bench`: what an IP-Adapter costs per frame, and how long
 * a style change takes to reach the stream. Prints numbers; never a test.
 *
 *   bench [--model <folder exported with an IP-Adapter>] [--plain <the same model without one>]
 *         [--device cpu|webgpu|auto] [--size 512 (default 64 for the micro fixture)] [--steps 45 | 32,45]
 *         [--frames 50] [--warmup 5] [--switches 5] [--json]
 *
 * Runs on the same inputs, each after its own warm-up: the plain model (when --plain is given), the
 * IP-Adapter model with the adapter off (zero image tokens and scales: the UNet's extra attention
 * still runs), and on at scale 1 with a style image. Then `switches` style changes through the
 * updater while frames keep coming: the time from `update()` to its resolution (the encoder and
 * projection run then; frames never wait for them) and the frame rate meanwhile.
 */
import { parseArgs } from 'node:util';
import { createRuntime, createStreamDiffusion, loadModel, measureStream, movingPattern, type AnyUNetWrapperV1, type DeviceRequest, type LoadedModel } from '@streamdiffusion/core';
import { createIpAdapter, type IpAdapterEntryInput } from '../src/index.js';
import { MICRO_IP_MODEL } from '../test-support/fixtures.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: MICRO_IP_MODEL },
    plain: { type: 'string' },
    device: { type: 'string', default: 'auto' },
    size: { type: 'string' },
    steps: { type: 'string', default: '45' },
    frames: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '5' },
    switches: { type: 'string', default: '5' },
    prompt: { type: 'string', default: 'a watercolor lighthouse at dusk' },
    json: { type: 'boolean', default: false },
  },
});

function integer(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`bench: --${name}: expected a non-negative integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return value;
}

const frames = integer('frames', values.frames);
const warmup = integer('warmup', values.warmup);
const switches = integer('switches', values.switches);
const tIndexList = values.steps.split(',').map((step) => integer('steps', step.trim()));
// 64 × 64 is the micro fixture's size; 512 × 512 that of a real model.
const width = values.size === undefined ? (values.model === MICRO_IP_MODEL ? 64 : 512) : integer('size', values.size);
const height = width;

// Moving patterns: the frames, and (at another size) the style images.
const inputs = Array.from({ length: 8 }, (_, index) => movingPattern(index, width, height));
const styles = Array.from({ length: Math.max(1, switches) + 1 }, (_, index) => movingPattern(100 + 17 * index, 300, 300));

const runtime = await createRuntime({ device: values.device as DeviceRequest });
try {
  const ipModel = await loadModel({ runtime, folder: values.model });
  const entry = (extra: Partial<IpAdapterEntryInput>): IpAdapterEntryInput => ({ ipadapter_model_path: values.model, style_image: styles[0]!, ...extra });

  const measure = async (name: string, model: LoadedModel, wrappers: AnyUNetWrapperV1[]) => {
    const stream = await createStreamDiffusion({ model, wrappers, prompt: values.prompt, width, height, tIndexList, cfgType: 'none' });
    try {
      const measured = await measureStream({ runtime, call: (index) => stream.img2img(inputs[index % inputs.length]!), frames, warmup });
      const modelMsPerFrame = Object.fromEntries(Object.entries(measured.models).map(([model, entry]) => [model, entry.msPerCall]));
      return { name, fps: measured.fps, msPerFrame: measured.latencyMs.mean, latencyP50Ms: measured.latencyMs.p50, modelMsPerFrame };
    } finally {
      await stream.dispose();
    }
  };

  const results = [];
  if (values.plain !== undefined) {
    const plain = await loadModel({ runtime, folder: values.plain });
    results.push(await measure('plain model (no IP-Adapter)', plain, []));
    await plain.dispose();
  }
  results.push(await measure('IP-Adapter off (enabled: false)', ipModel, [await createIpAdapter({ ipadapters: [entry({ enabled: false })] })]));
  results.push(await measure('IP-Adapter on (scale 1)', ipModel, [await createIpAdapter({ ipadapters: [entry({ scale: 1 })] })]));

  // Style changes while frames keep coming: update() resolves once the new tokens are made; frames run on meanwhile.
  const adapter = await createIpAdapter({ ipadapters: [entry({})] });
  const stream = await createStreamDiffusion({ model: ipModel, wrappers: [adapter], prompt: values.prompt, width, height, tIndexList, cfgType: 'none' });
  const switchMs: number[] = [];
  let framesDuring = 0;
  let spentDuring = 0;
  let encoderRuns = 0;
  try {
    for (let index = 0; index < warmup; index += 1) await stream.img2img(inputs[index % inputs.length]!);
    for (let change = 1; change <= switches; change += 1) {
      const started = performance.now();
      let done = false;
      const update = stream.update({ ipadapters: [entry({ style_image: styles[change]! })] }).then(() => {
        switchMs.push(performance.now() - started);
        done = true;
      });
      while (!done) {
        await stream.img2img(inputs[framesDuring % inputs.length]!);
        framesDuring += 1;
      }
      spentDuring += performance.now() - started;
      await update;
    }
    encoderRuns = adapter.encoderRuns();
  } finally {
    await stream.dispose();
  }
  const styleSwitch = {
    switches,
    msPerSwitch: switchMs.reduce((sum, ms) => sum + ms, 0) / Math.max(1, switchMs.length),
    fpsDuringSwitches: framesDuring / (spentDuring / 1000),
    encoderRuns,
  };

  const off = results.find((result) => result.name.startsWith('IP-Adapter off'))!;
  const on = results.find((result) => result.name.startsWith('IP-Adapter on'))!;
  const plain = results.find((result) => result.name.startsWith('plain'));
  const summary = {
    device: runtime.device,
    model: values.model,
    size: `${width}x${height}`,
    tIndexList,
    frames,
    results,
    ipAdapterMsPerFrame: plain === undefined ? undefined : on.msPerFrame - plain.msPerFrame,
    onVersusOffMsPerFrame: on.msPerFrame - off.msPerFrame,
    styleSwitch,
  };
  if (values.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`device ${runtime.device.device} (${runtime.device.reason}); ${summary.size}; t_index_list [${tIndexList.join(', ')}]; ${frames} frames each`);
    for (const result of results) {
      const models = Object.entries(result.modelMsPerFrame).map(([model, ms]) => `${model} ${ms.toFixed(2)}`).join(', ');
      console.log(`${result.name.padEnd(34)} ${result.fps.toFixed(2).padStart(7)} fps  ${result.msPerFrame.toFixed(2).padStart(8)} ms/frame  p50 ${result.latencyP50Ms.toFixed(2)} ms  [worker ms/frame: ${models}]`);
    }
    if (summary.ipAdapterMsPerFrame !== undefined) console.log(`IP-Adapter cost per frame (on − plain): ${summary.ipAdapterMsPerFrame.toFixed(2)} ms`);
    console.log(`on − off per frame: ${summary.onVersusOffMsPerFrame.toFixed(2)} ms`);
    console.log(`style change (encoder + projection, beside the stream): ${styleSwitch.msPerSwitch.toFixed(1)} ms each over ${switches}; ${styleSwitch.fpsDuringSwitches.toFixed(2)} fps meanwhile; ${styleSwitch.encoderRuns} encoder runs`);
  }
} finally {
  await runtime.dispose();
}
