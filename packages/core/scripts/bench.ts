/**
 * `pnpm bench`: runs the pipeline on a model folder for N frames after a warm-up and prints what
 * it measured (a benchmark that prints numbers, never a test).
 *
 *   pnpm bench [--model <folder>] [--device cpu|webgpu|cuda|auto] [--size 512 | --width W --height H]
 *              [--steps 45 | --steps 32,45] [--cfg none|self|initialize|full] [--fbs 1] [--frames 100]
 *              [--warmup 10] [--mode img2img|txt2img] [--layout NHWC|NCHW (WebGPU; default NHWC)] [--sequential] [--json]
 *              [--profile <file prefix>]  (onnxruntime's per-operator trace of each model)
 *              [--validation disabled|wgpuOnly|basic|full]  (WebGPU validation; onnxruntime's default otherwise)
 *
 * Frames are generated RGB buffers at the output size (a moving pattern), so preprocessing is the
 * conversion to a tensor, as for camera frames already at size.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createRuntime, createStreamDiffusion, FRAME_STAGES, loadModel, measureStream, movingPattern, type CfgType, type DeviceRequest } from '../src/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: fileURLToPath(new URL('../../../fixtures/models/tiny-sd-turbo', import.meta.url)) },
    device: { type: 'string', default: 'auto' },
    size: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    steps: { type: 'string', default: '45' },
    'num-inference-steps': { type: 'string', default: '50' },
    cfg: { type: 'string', default: 'none' },
    guidance: { type: 'string', default: '1.2' },
    fbs: { type: 'string', default: '1' },
    frames: { type: 'string', default: '100' },
    warmup: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'img2img' },
    layout: { type: 'string' },
    sequential: { type: 'boolean', default: false },
    prompt: { type: 'string', default: 'a watercolor lighthouse at dusk' },
    json: { type: 'boolean', default: false },
    profile: { type: 'string' },
    validation: { type: 'string' },
  },
});

function integer(name: string, text: string | undefined, fallback?: number): number {
  const value = text === undefined ? fallback : Number(text);
  if (value === undefined || !Number.isInteger(value) || value < 0) {
    console.error(`bench: --${name}: expected a non-negative integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return value;
}

const size = values.size === undefined ? undefined : integer('size', values.size);
const width = integer('width', values.width, size ?? 512);
const height = integer('height', values.height, size ?? 512);
const frameBufferSize = integer('fbs', values.fbs);
const frames = integer('frames', values.frames);
const warmup = integer('warmup', values.warmup);
const tIndexList = values.steps.split(',').map((step) => integer('steps', step.trim()));
const mode = values.mode;
if (mode !== 'img2img' && mode !== 'txt2img') {
  console.error(`bench: --mode: expected img2img or txt2img, got ${JSON.stringify(mode)}`);
  process.exit(2);
}
const layout = values.layout;
if (layout !== undefined && layout !== 'NHWC' && layout !== 'NCHW') {
  console.error(`bench: --layout: expected NHWC or NCHW, got ${JSON.stringify(layout)}`);
  process.exit(2);
}

const loadStarted = performance.now();
const runtime = await createRuntime({
  device: values.device as DeviceRequest,
  webgpu: {
    ...(layout === undefined ? {} : { preferredLayout: layout }),
    ...(values.validation === undefined ? {} : { validationMode: values.validation as 'disabled' | 'wgpuOnly' | 'basic' | 'full' }),
  },
  // onnxruntime's per-operator profile of every model, written when the models are released.
  ...(values.profile === undefined ? {} : { profileFilePrefix: values.profile }),
});
try {
  const model = await loadModel({ runtime, folder: values.model });
  const stream = await createStreamDiffusion({
    model,
    prompt: values.prompt,
    width,
    height,
    tIndexList,
    numInferenceSteps: integer('num-inference-steps', values['num-inference-steps']),
    frameBufferSize,
    cfgType: values.cfg as CfgType,
    guidanceScale: Number(values.guidance),
    useDenoisingBatch: !values.sequential,
  });
  const loadMs = performance.now() - loadStarted;
  const inputs = Array.from({ length: 8 }, (_, index) => Array.from({ length: frameBufferSize }, (_, frame) => movingPattern(index * frameBufferSize + frame, width, height)));
  const call = (index: number) => (mode === 'img2img' ? stream.img2img(inputs[index % inputs.length]!) : stream.txt2img());
  const measured = await measureStream({ runtime, call, frames, warmup, framesPerCall: frameBufferSize });
  const result = {
    model: values.model,
    device: runtime.device,
    settings: {
      mode,
      width,
      height,
      tIndexList,
      cfgType: values.cfg,
      guidanceScale: Number(values.guidance),
      frameBufferSize,
      useDenoisingBatch: !values.sequential,
      layout: layout ?? null,
      validation: values.validation ?? null,
      frames,
      warmup,
    },
    ...measured,
    loadMs,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
  if (values.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    const ms = (value: number) => `${value.toFixed(2)} ms`;
    console.log(`model    ${result.model}`);
    console.log(`device   ${result.device.device} (${result.device.reason})${layout === undefined ? '' : `, layout ${layout}`}`);
    console.log(
      `settings ${mode} ${width}×${height}, t_index_list [${tIndexList.join(', ')}], cfg ${values.cfg}, frame_buffer_size ${frameBufferSize}${values.sequential ? ', sequential steps' : ''}; ${frames} calls after ${warmup} warm-up`,
    );
    console.log(`fps      ${result.fps.toFixed(2)} frames/s (${result.callsPerSecond.toFixed(2)} calls/s)`);
    console.log(`latency  p50 ${ms(result.latencyMs.p50)}, p99 ${ms(result.latencyMs.p99)}, mean ${ms(result.latencyMs.mean)}`);
    console.log(`stages   ${FRAME_STAGES.map((stage) => `${stage} ${ms(result.stagesMs[stage])}`).join(', ')}`);
    console.log(`models   ${Object.entries(result.models).map(([name, entry]) => `${name} ${ms(entry.msPerCall)} (${entry.runsPerCall} runs)`).join(', ')} per call, inside the worker`);
    console.log(`outside  ${(result.outsideModelRunsShare * 100).toFixed(1)}% of call time is outside model runs`);
    console.log(`startup  load ${ms(loadMs)}, first call ${ms(result.firstCallMs)}, warm-up ${ms(result.warmupMs)}`);
    console.log(`memory   peak RSS ${result.peakRssMb.toFixed(0)} MB`);
  }
  await stream.dispose();
  await model.dispose();
} finally {
  await runtime.dispose();
}
