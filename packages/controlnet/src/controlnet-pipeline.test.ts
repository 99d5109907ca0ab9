import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError,
  createRuntime,
  createStreamDiffusion,
  InvalidArgumentError,
  loadConfig,
  loadModel,
  ModelFolderError,
  type LoadedModel,
  type RgbImage,
  type Runtime,
  type WrapperFrameV1,
} from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromRoot, MICRO_CANNY, MICRO_MODEL, MICRO_SIX } from '../test-support/fixtures.js';
import { z } from 'zod';
import { controlNetConfigFields, controlNetFromConfig } from './controlnet-config.js';
import type { ControlNetEntryInput } from './controlnet-parameters.js';
import { createControlNet } from './controlnet-wrapper.js';
import type { PreprocessorDefinition } from './preprocessors/preprocessor.js';

const MODEL = MICRO_MODEL;
const CANNY = MICRO_CANNY;
const SIX = MICRO_SIX;
const SIZE = 64;

/** Frame k: squares that move with k, so canny finds edges and every frame differs. */
function pattern(k: number): RgbImage {
  const data = new Uint8Array(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y += 1) {
    for (let x = 0; x < SIZE; x += 1) {
      const inside = ((x + 3 * k) >> 4) % 2 === ((y + k) >> 4) % 2;
      const offset = (y * SIZE + x) * 3;
      data[offset] = inside ? 220 : 30;
      data[offset + 1] = (x * 4 + k * 9) & 255;
      data[offset + 2] = inside ? 40 : 200;
    }
  }
  return { data, width: SIZE, height: SIZE, channels: 3 };
}

/** Frame k as the tensor API takes it: planar `[1, 3, H, W]` in [-1, 1]. */
function tensorOf(k: number): Float32Array {
  const image = pattern(k);
  const plane = SIZE * SIZE;
  const out = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel += 1) {
    for (let pixel = 0; pixel < plane; pixel += 1) out[channel * plane + pixel] = image.data[pixel * 3 + channel]! / 127.5 - 1;
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((value, index) => value === b[index]);
const maxDifference = (a: Float32Array, b: Float32Array): number => Math.max(...Array.from(a, (value, index) => Math.abs(value - b[index]!)));

/** What a spy preprocessor saw of one `process` call. */
interface SpyCall {
  readonly name: string;
  /** Which frame (its first red byte tells them apart). */
  readonly frame: number;
  /** How many frames the test had seen finish when the call started. */
  readonly finishedBefore: number;
  readonly previousOutput: boolean;
  readonly level: number;
}

/** A preprocessor that records its calls and returns the frame with its channels scaled by `level`. */
function spy(name: string, usesPreviousOutput: boolean, calls: SpyCall[], finished: () => number): PreprocessorDefinition<{ level: number }> {
  return {
    name,
    description: 'records its calls (tests)',
    parameters: z.object({ level: z.number().default(1) }),
    usesPreviousOutput,
    needsModel: false,
    async create() {
      return {
        async process(frame, parameters, context) {
          calls.push({ name, frame: frame.data[0]!, finishedBefore: finished(), previousOutput: context.previousOutput !== undefined, level: parameters.level });
          const data = new Uint8Array(context.width * context.height * 3);
          for (let index = 0; index < data.length; index += 1) data[index] = Math.min(255, Math.round(frame.data[index]! * parameters.level));
          return { data, width: context.width, height: context.height, channels: 3 };
        },
        async dispose() {},
      };
    },
  };
}

describe('ControlNet in the pipeline (micro model, CPU)', () => {
  let runtime: Runtime;
  let model: LoadedModel;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: MODEL });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  // One step and no residual CFG: every frame depends only on its input and the seed, so pipelines can be compared frame by frame.
  const pipeline = (controlnets: ControlNetEntryInput[], extra: Parameters<typeof createControlNet>[0] = {}) =>
    createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [createControlNet({ controlnets, ...extra })] });
  const canny = (scale: number, params: Record<string, number> = {}): ControlNetEntryInput => ({ model_id: CANNY, conditioning_scale: scale, preprocessor: 'canny', preprocessor_params: params });
  const outputs = async (stream: Awaited<ReturnType<typeof pipeline>>, frames: readonly number[]): Promise<Uint8Array[]> => {
    const made: Uint8Array[] = [];
    for (const k of frames) made.push((await stream.img2img(pattern(k))).images[0]!.data);
    return made;
  };

  it('steers the frames; scale 0 gives exactly the frames of no ControlNet', async () => {
    const none = await outputs(await pipeline([]), [0, 1, 2]);
    const off = await outputs(await pipeline([canny(0)]), [0, 1, 2]);
    const on = await outputs(await pipeline([canny(1)]), [0, 1, 2]);
    off.forEach((frame, index) => expect(sameBytes(frame, none[index]!), `frame ${index}`).toBe(true));
    on.forEach((frame, index) => expect(sameBytes(frame, none[index]!), `frame ${index}`).toBe(false));
  });

  it('preprocesses the next frames while a frame diffuses; feedback waits for the output before it; the results are those of one frame at a time', async () => {
    const calls: SpyCall[] = [];
    let finished = 0;
    const preprocessors = { ahead: spy('ahead', false, calls, () => finished), behind: spy('behind', true, calls, () => finished) };
    const entries: ControlNetEntryInput[] = [
      { model_id: CANNY, preprocessor: 'ahead', conditioning_scale: 0.8 },
      { model_id: SIX, preprocessor: 'behind', conditioning_scale: 0.5 },
    ];
    const overlapped = await pipeline(entries, { preprocessors });
    // Three frames given at once, as a live source with a slow pipeline does (see createFrameStream's overlap).
    const results = await Promise.all(
      [0, 1, 2].map((k) =>
        overlapped.img2imgTensor(tensorOf(k)).then((result) => {
          finished += 1;
          return result;
        }),
      ),
    );
    const red = (k: number) => pattern(k).data[0]!;
    // Every frame's `ahead` preprocessing started before any frame had finished.
    expect(calls.filter((call) => call.name === 'ahead').map((call) => [call.frame, call.finishedBefore])).toEqual([0, 1, 2].map((k) => [red(k), 0]));
    // `behind` blends in the previous output: it ran in each frame's turn, with the output before it from frame 1 on.
    expect(calls.filter((call) => call.name === 'behind').map((call) => [call.frame, call.previousOutput])).toEqual([
      [red(0), false],
      [red(1), true],
      [red(2), true],
    ]);

    const oneByOne = await pipeline(entries, { preprocessors: { ahead: spy('ahead', false, [], () => 0), behind: spy('behind', true, [], () => 0) } });
    for (const [k, result] of results.entries()) expect(maxDifference(result.images, (await oneByOne.img2imgTensor(tensorOf(k))).images), `frame ${k}`).toBe(0);
  });

  it('preprocesses a frame prepared before an update again with the new settings in its turn', async () => {
    const calls: SpyCall[] = [];
    const wrapper = createControlNet({ controlnets: [{ model_id: CANNY, preprocessor: 'ahead', preprocessor_params: { level: 1 } }], preprocessors: { ahead: spy('ahead', false, calls, () => 0) } });
    await wrapper.attach({ model, runtime, width: SIZE, height: SIZE, frameBufferSize: 1, latentShape: [4, 8, 8] });
    const frame: WrapperFrameV1 = { input: tensorOf(0), images: new Map([['control', tensorOf(0)]]), previousOutput: () => undefined };
    await wrapper.prepareFrame!(frame);
    const update = await wrapper.prepareUpdate({ controlnets: [{ model_id: CANNY, preprocessor: 'ahead', preprocessor_params: { level: 0.5 } }] as never });
    expect(update.applied).toEqual(['controlnets']);
    update.commit();
    const call = { latents: new Float32Array(4 * 8 * 8), batch: 1, timesteps: new Float32Array([500]), steps: [0], stepCount: 1, unconditional: [false], textEmbeddings: new Float32Array(77 * 32), frame };
    await wrapper.unetCall(call);
    expect(calls.map((seen) => seen.level)).toEqual([1, 0.5]);
    await wrapper.releaseFrame!(frame);
    await wrapper.dispose();
  });

  it('takes every key through the updater while the stream runs: scale, preprocessor params, add, remove', async () => {
    const baseline = (await runtime.stats()).sessions;
    const live = await pipeline([]);
    const plain = await outputs(live, [0]);

    // Add: the ControlNet loads, the next frame is steered exactly as a pipeline built with it.
    expect(await live.update({ controlnets: [canny(1)] })).toEqual({ applied: ['controlnets'], needsReload: [] });
    expect(live.wrappers[0]).toMatchObject({ name: 'controlnet' });
    const built = await pipeline([canny(1)]);
    expect(sameBytes((await outputs(live, [1]))[0]!, (await outputs(built, [1]))[0]!)).toBe(true);
    await built.dispose();

    // Hot scale and thresholds: the same ControlNet (no reload), new values from the next frame.
    await live.update({ controlnets: [canny(0.5, { low_threshold: 20, high_threshold: 60 })] });
    expect(live.getState().controlnets).toEqual([expect.objectContaining({ model_id: CANNY, conditioning_scale: 0.5, preprocessor_params: { low_threshold: 20, high_threshold: 60 } })]);
    const reference = await pipeline([canny(0.5, { low_threshold: 20, high_threshold: 60 })]);
    expect(sameBytes((await outputs(live, [2]))[0]!, (await outputs(reference, [2]))[0]!)).toBe(true);
    await reference.dispose();

    // Bad values are refused naming the key; nothing changes.
    expect(() => live.update({ controlnets: [canny(-1)] })).toThrow(/controlnets\.0\.conditioning_scale/);
    await expect(live.update({ controlnets: [canny(1, { low_threshold: 300 })] })).rejects.toThrow(/controlnets\.0\.preprocessor_params\.low_threshold/);
    await expect(live.update({ controlnets: [{ model_id: join(SIX, 'missing') }] })).rejects.toThrow(ModelFolderError);
    expect(live.getState().controlnets).toEqual([expect.objectContaining({ conditioning_scale: 0.5 })]);

    // Remove: back to exactly the frames without a ControlNet, and its session is released.
    await live.update({ controlnets: [] });
    expect(sameBytes((await outputs(live, [0]))[0]!, plain[0]!)).toBe(true);
    await live.dispose();
    expect((await runtime.stats()).sessions).toBe(baseline);
  });

  it('refuses a preprocessor of its own named like a built-in one, and lists its own among the known names', async () => {
    expect(() => createControlNet({ preprocessors: { canny: spy('canny', false, [], () => 0) } })).toThrow(InvalidArgumentError);
    const stream = await pipeline([], { preprocessors: { ahead: spy('ahead', false, [], () => 0) } });
    await expect(stream.update({ controlnets: [{ model_id: CANNY, preprocessor: 'sketch' }] })).rejects.toThrow(/one of canny, .*passthrough, ahead/);
  });

  describe('controlnets in config files', () => {
    let directory: string;
    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), 'sd-controlnet-config-'));
    });
    afterAll(async () => {
      await rm(directory, { recursive: true, force: true });
    });
    const write = async (name: string, lines: readonly string[]): Promise<string> => {
      const file = join(directory, name);
      await writeFile(file, `${lines.join('\n')}\n`);
      return file;
    };

    it('reads the forks’ keys, finds each ControlNet as model_id is found, and runs the pipeline it describes', async () => {
      const file = await write('canny.yaml', [
        `model_id: ${MODEL}`,
        't_index_list: [30]',
        'width: 64',
        'height: 64',
        'use_controlnet: true',
        'controlnets:',
        '  - model_id: micro-canny',
        '    conditioning_scale: 0.6',
        '    preprocessor: canny',
        '    preprocessor_params: { low_threshold: 50, high_threshold: 150 }',
        '    enabled: true',
      ]);
      const loaded = await loadConfig(file, { wrapperParameters: controlNetConfigFields });
      expect(loaded.warnings).toEqual([]);
      const controlnet = await controlNetFromConfig(loaded, { modelsDir: fromRoot('fixtures/controlnets') });
      const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [controlnet] });
      expect(controlnet.loaded()).toEqual([{ modelId: CANNY, channels: 3, preprocessor: 'canny' }]);
      const reference = await pipeline([canny(0.6, { low_threshold: 50, high_threshold: 150 })]);
      expect(sameBytes((await outputs(stream, [3]))[0]!, (await outputs(reference, [3]))[0]!)).toBe(true);
      await Promise.all([stream.dispose(), reference.dispose()]);
    });

    it('names file, line and key for a bad entry or a ControlNet that is not there; use_controlnet: false turns the list off', async () => {
      const bad = await write('bad.yaml', [`model_id: ${MODEL}`, 'controlnets:', '  - model_id: micro-canny', '    conditioning_scale: loud']);
      await expect(loadConfig(bad, { wrapperParameters: controlNetConfigFields })).rejects.toMatchObject({ line: 4, key: 'controlnets.0.conditioning_scale' });

      const missing = await write('missing.yaml', [`model_id: ${MODEL}`, 'controlnets:', '  - model_id: micro-depth']);
      const loaded = await loadConfig(missing, { wrapperParameters: controlNetConfigFields });
      const error = await controlNetFromConfig(loaded).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ line: 3, key: 'controlnets.0.model_id' });
      expect((error as Error).message).toContain(join(directory, 'micro-depth'));

      const off = await write('off.yaml', [`model_id: ${MODEL}`, 'use_controlnet: false', 'controlnets:', '  - model_id: micro-canny']);
      const switched = await loadConfig(off, { wrapperParameters: controlNetConfigFields });
      expect(switched.config.controlnets).toEqual([]);
      expect(switched.warnings.map((warning) => warning.message)).toEqual([`${off}:3: controlnets: ignored: use_controlnet is false`]);
    });
  });
});
