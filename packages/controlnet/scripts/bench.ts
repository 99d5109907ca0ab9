/**
 * `pnpm --filter @streamdiffusion/controlnet bench`: what a ControlNet costs per frame, and what
 * preprocessing frame N + 1 during the diffusion of frame N gains. Prints numbers; never a test.
 *
 *   bench [--model <folder with residual inputs>] [--controlnet <ControlNet folder>] [--preprocessor canny]
 *         [--device cpu|webgpu|auto] [--size 512 (default 64 for the micro fixture)] [--steps 45 | 32,45] [--frames 50] [--warmup 5] [--json]
 *
 * Five runs on the same model, each after its own warm-up: no ControlNet (the UNet fed zero
 * residuals) and one ControlNet at conditioning_scale 1, each with frames given one at a time (the
 * next frame is given when the last result is back) and overlapped (the next frame is given while
 * one runs, as `createFrameStream({ overlap: true })` does); then the ControlNet at 0.8, whose
 * residuals are scaled before the UNet. Frames are generated RGB buffers at the output size.
 */
import { parseArgs } from 'node:util';
import { createRuntime, createStreamDiffusion, loadModel, measureStream, type DeviceRequest, type RgbImage } from '@streamdiffusion/core';
import { createControlNet, PREPROCESSORS, preprocessorNamed, type AnyPreprocessorDefinition, type ControlNetEntryInput } from '../src/index.js';
import { fromRoot } from '../test-support/fixtures.js';

const DEFAULT_MODEL = fromRoot('fixtures/models/micro-sd-turbo-controlnet');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    controlnet: { type: 'string', default: fromRoot('fixtures/controlnets/micro-canny') },
    preprocessor: { type: 'string', default: 'canny' },
    device: { type: 'string', default: 'auto' },
    size: { type: 'string' },
    steps: { type: 'string', default: '45' },
    frames: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '5' },
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

const size = values.size === undefined ? undefined : integer('size', values.size);
const frames = integer('frames', values.frames);
const warmup = integer('warmup', values.warmup);
const tIndexList = values.steps.split(',').map((step) => integer('steps', step.trim()));
if (!Object.hasOwn(PREPROCESSORS, values.preprocessor)) {
  console.error(`bench: --preprocessor: expected one of ${Object.keys(PREPROCESSORS).join(', ')}, got ${JSON.stringify(values.preprocessor)}`);
  process.exit(2);
}

/** The chosen preprocessor, timed: every `process` call's milliseconds go to `spent`. */
const spent: number[] = [];
const base = preprocessorNamed(values.preprocessor);
const timed: AnyPreprocessorDefinition = {
  ...base,
  name: 'timed',
  async create(setup) {
    const instance = await base.create(setup);
    return {
      async process(frame, parameters, context) {
        const started = performance.now();
        try {
          return await instance.process(frame, parameters, context);
        } finally {
          spent.push(performance.now() - started);
        }
      },
      dispose: () => instance.dispose(),
    };
  },
};

const runtime = await createRuntime({ device: values.device as DeviceRequest });
try {
  const model = await loadModel({ runtime, folder: values.model });
  // 64 × 64 is the micro fixture's size; 512 × 512 that of a real model.
  const width = size ?? (values.model === DEFAULT_MODEL ? 64 : 512);
  const height = width;

  /** A moving colour pattern with edges, one RGB frame per index. */
  const pattern = (index: number): RgbImage => {
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const offset = (y * width + x) * 3;
        const inside = (((x + index * 6) >> 5) + ((y + index * 2) >> 5)) % 2 === 0;
        data[offset] = inside ? 220 : (x + index * 3) & 255;
        data[offset + 1] = (y + index * 5) & 255;
        data[offset + 2] = inside ? 30 : ((x ^ y) + index * 7) & 255;
      }
    }
    return { data, width, height, channels: 3 };
  };
  const inputs = Array.from({ length: 8 }, (_, index) => pattern(index));

  const run = async (name: string, controlnets: ControlNetEntryInput[], overlap: boolean) => {
    const controlnet = createControlNet({ controlnets, preprocessors: { timed } });
    const stream = await createStreamDiffusion({ model, wrappers: [controlnet], prompt: values.prompt, width, height, tIndexList, cfgType: 'none' });
    try {
      const measured = await measureStream({
        runtime,
        call: (index) => stream.img2img(inputs[index % inputs.length]!),
        frames,
        warmup,
        overlap,
        beforeMeasuring: () => (spent.length = 0),
      });
      return {
        name,
        overlap,
        controlnets: controlnets.length,
        fps: measured.fps,
        msPerFrame: measured.latencyMs.mean,
        latencyP50Ms: measured.latencyMs.p50,
        preprocessMsPerFrame: spent.reduce((sum, ms) => sum + ms, 0) / Math.max(1, frames),
        modelMsPerFrame: Object.fromEntries(Object.entries(measured.models).map(([model, entry]) => [model, entry.msPerCall])),
      };
    } finally {
      await stream.dispose();
    }
  };

  const entry: ControlNetEntryInput = { model_id: values.controlnet, preprocessor: 'timed', conditioning_scale: 1 };
  const results = [
    await run('none', [], false),
    await run('none, overlapped', [], true),
    await run('controlnet', [entry], false),
    await run('controlnet, overlapped', [entry], true),
    // Below full weight the residuals are scaled (combined) before the UNet; at 1 they are fed as they are.
    await run('controlnet at 0.8', [{ ...entry, conditioning_scale: 0.8 }], false),
  ];
  const [none, noneOverlap, one, oneOverlap] = results as [(typeof results)[number], (typeof results)[number], (typeof results)[number], (typeof results)[number]];
  const summary = {
    controlNetMsPerFrame: one.msPerFrame - none.msPerFrame,
    controlNetMsPerFrameOverlapped: oneOverlap.msPerFrame - noneOverlap.msPerFrame,
    overlapGain: oneOverlap.fps / one.fps - 1,
  };
  if (values.json) {
    console.log(JSON.stringify({ model: values.model, controlnet: values.controlnet, preprocessor: values.preprocessor, device: runtime.device, width, height, tIndexList, frames, warmup, results, summary }, null, 2));
  } else {
    console.log(`model    ${values.model}\ncontrol  ${values.controlnet} (${values.preprocessor})`);
    console.log(`device   ${runtime.device.device} (${runtime.device.reason}); img2img ${width}×${height}, t_index_list [${tIndexList.join(', ')}], cfg none; ${frames} frames after ${warmup} warm-up`);
    for (const result of results) {
      const models = Object.entries(result.modelMsPerFrame).map(([model, ms]) => `${model} ${ms.toFixed(2)}`).join(', ');
      console.log(
        `${result.name.padEnd(24)} ${result.fps.toFixed(2)} fps, ${result.msPerFrame.toFixed(2)} ms/frame, p50 ${result.latencyP50Ms.toFixed(2)} ms, preprocess ${result.preprocessMsPerFrame.toFixed(2)} ms/frame; models ${models} ms/frame`,
    );
    }
    console.log(
      `ControlNet cost ${summary.controlNetMsPerFrame.toFixed(2)} ms/frame one at a time, ${summary.controlNetMsPerFrameOverlapped.toFixed(2)} ms/frame overlapped; overlap gain ${(summary.overlapGain * 100).toFixed(1)}% fps`,
    );
  }
  await model.dispose();
} finally {
  await runtime.dispose();
}
