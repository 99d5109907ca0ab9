import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError,
  configJsonSchema,
  createRuntime,
  createStreamDiffusion,
  InvalidArgumentError,
  loadConfig,
  loadModel,
  ModelFolderError,
  readImage,
  type HostTensor,
  type LoadedModel,
  type RgbImage,
  type Runtime,
  type WrapperFrameV1,
} from '@streamdiffusion/core';
import { createControlNet } from '@streamdiffusion/controlnet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, frame, maxDifference, MICRO_CONTROLNET_MODEL, MICRO_IP_MODEL, MICRO_PLUS, SIZE, STYLE_IMAGE } from '../test-support/fixtures.js';
import { ipAdapterConfigFields, ipAdapterFromConfig } from './ip-adapter-config.js';
import type { IpAdapterEntryInput } from './ip-adapter-parameters.js';
import { createIpAdapter } from './ip-adapter-wrapper.js';


const same = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((value, index) => value === b[index]);

const regular = (extra: Partial<IpAdapterEntryInput> = {}): IpAdapterEntryInput => ({ ipadapter_model_path: MICRO_IP_MODEL, style_image: STYLE_IMAGE, ...extra });

describe('the IP-Adapter in the pipeline (micro model, CPU)', () => {
  let runtime: Runtime;
  let model: LoadedModel;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: MICRO_IP_MODEL });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  // One step and no residual CFG: every frame depends only on its input and the seed, so pipelines compare frame by frame.
  const pipeline = async (entry: IpAdapterEntryInput, options: { tIndexList?: number[] } = {}) =>
    createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: options.tIndexList ?? [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [await createIpAdapter({ ipadapters: [entry] })] });
  const outputs = async (stream: { img2imgTensor(frames: Float32Array): Promise<{ readonly images: Float32Array }> }, frames: readonly number[]): Promise<Float32Array[]> => {
    const made: Float32Array[] = [];
    for (const k of frames) made.push((await stream.img2imgTensor(frame(k))).images);
    return made;
  };

  it('at scale 0 gives the plain UNet’s frames (the same weights without an adapter); on, it steers them', async () => {
    const plainModel = await loadModel({ runtime, folder: MICRO_CONTROLNET_MODEL });
    // micro-sd-turbo-controlnet is the same checkpoint without the adapter; zero residuals make its UNet the plain one.
    const plain = await createStreamDiffusion({ model: plainModel, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [createControlNet()] });
    const none = await outputs(plain, [0, 1]);
    const zero = await outputs(await pipeline(regular({ scale: 0 })), [0, 1]);
    const off = await outputs(await pipeline(regular({ enabled: false })), [0, 1]);
    const on = await outputs(await pipeline(regular({ scale: 1 })), [0, 1]);
    for (const index of [0, 1]) {
      expect(maxDifference(zero[index]!, none[index]!), `frame ${index}`).toBeLessThan(1e-5);
      expect(same(off[index]!, zero[index]!), `frame ${index}: off equals scale 0`).toBe(true);
      expect(maxDifference(on[index]!, zero[index]!), `frame ${index}`).toBeGreaterThan(1e-2);
    }
    await plain.dispose();
    await plainModel.dispose();
  });

  it('takes every hot key through the updater while the stream runs, each frame equal to a pipeline built with it', async () => {
    const live = await pipeline(regular({ scale: 0.5 }));
    await outputs(live, [0]);
    const cases: Partial<IpAdapterEntryInput>[] = [
      { scale: 1.2 },
      { scale: 0.9, weight_type: 'style transfer' },
      { scale: 0.9, weight_type: 'style and composition', composition_scale: 0.3 },
      { scale: 1, step_schedule: 'ease out', start_at: 0, end_at: 1 },
      { scale: 1, enabled: false },
      { scale: 1, style_image: EXAMPLE_IMAGE },
    ];
    for (const [index, extra] of cases.entries()) {
      expect(await live.update({ ipadapters: [regular(extra)] }), JSON.stringify(extra)).toEqual({ applied: ['ipadapters'], needsReload: [] });
      expect(live.getState().ipadapters[0]).toMatchObject(extra);
      const built = await pipeline(regular(extra));
      expect(same((await outputs(live, [index + 1]))[0]!, (await outputs(built, [index + 1]))[0]!), JSON.stringify(extra)).toBe(true);
      await built.dispose();
    }
    // The same values again change nothing.
    expect(await live.update({ ipadapters: [regular({ scale: 1, style_image: EXAMPLE_IMAGE })] })).toEqual({ applied: [], needsReload: [] });
    await live.dispose();
  });

  it('embeds each style image once: switching back and forth runs the encoder once per image', async () => {
    const adapter = await createIpAdapter({ ipadapters: [regular()] });
    const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [adapter] });
    expect(adapter.encoderRuns()).toBe(1);
    const first = (await outputs(stream, [3]))[0]!;
    await stream.update({ ipadapters: [regular({ style_image: EXAMPLE_IMAGE })] });
    const second = (await outputs(stream, [3]))[0]!;
    await stream.update({ ipadapters: [regular({ style_image: STYLE_IMAGE })] });
    expect(same((await outputs(stream, [3]))[0]!, first)).toBe(true);
    expect(same(second, first)).toBe(false);
    // Pixels in memory are embedded by content: the same image as pixels, twice, is one more run.
    const pixels: RgbImage = await readImage(EXAMPLE_IMAGE);
    await stream.update({ ipadapters: [regular({ style_image: pixels })] });
    expect(same((await outputs(stream, [3]))[0]!, second)).toBe(true);
    await stream.update({ ipadapters: [regular({ style_image: { ...pixels } })] });
    expect(adapter.encoderRuns()).toBe(3);
    await stream.dispose();
  });

  it('changes scale and preset without running a model; a new style runs the encoder and projection once', async () => {
    const live = await pipeline(regular({ scale: 0.5 }));
    const projections = async () => (await runtime.stats()).runs.projection?.count ?? 0;
    const before = await projections();
    await live.update({ ipadapters: [regular({ scale: 1.5, weight_type: 'composition' })] });
    await live.update({ ipadapters: [regular({ scale: 0.7 })] });
    expect(await projections()).toBe(before);
    await live.update({ ipadapters: [regular({ style_image: EXAMPLE_IMAGE })] });
    expect(await projections()).toBe(before + 1);
    await live.dispose();
  });

  it('blends several weighted style images: one image at any weight is that image; two differ from each', async () => {
    const single = (await outputs(await pipeline(regular({ style_image: undefined, style_images: [{ image: STYLE_IMAGE, weight: 3 }] })), [0]))[0]!;
    const style = (await outputs(await pipeline(regular()), [0]))[0]!;
    expect(same(single, style)).toBe(true);
    const example = (await outputs(await pipeline(regular({ style_image: EXAMPLE_IMAGE })), [0]))[0]!;
    const blend = (await outputs(await pipeline(regular({ style_image: undefined, style_images: [{ image: STYLE_IMAGE, weight: 0.75 }, { image: EXAMPLE_IMAGE, weight: 0.25 }] })), [0]))[0]!;
    expect(maxDifference(blend, style)).toBeGreaterThan(1e-4);
    expect(maxDifference(blend, example)).toBeGreaterThan(1e-4);
  });

  it('refuses bad values naming the key and changes nothing; another adapter needs a new pipeline', async () => {
    const live = await pipeline(regular({ scale: 0.8 }));
    const before = (await outputs(live, [5]))[0]!;
    expect(() => live.update({ ipadapters: [regular({ scale: 9 })] })).toThrow(/ipadapters\.0\.scale/);
    expect(() => live.update({ ipadapters: [{ ...regular(), weight_type: 'sparkly' as never }] })).toThrow(/ipadapters\.0\.weight_type/);
    expect(() => live.update({ ipadapters: [regular({ style_images: [{ image: EXAMPLE_IMAGE, weight: 1 }] })] })).toThrow(/ipadapters\.0\.style_images.*not both/);
    expect(() => live.update({ ipadapters: [regular(), regular()] })).toThrow(/ipadapters.*one IP-Adapter/);
    const missing = join(tmpdir(), 'no-such-style.png');
    await expect(live.update({ ipadapters: [regular({ style_image: missing })] })).rejects.toThrow(InvalidArgumentError);
    await expect(live.update({ ipadapters: [regular({ style_image: missing })] })).rejects.toThrow(/ipadapters\.0\.style_image.*no-such-style\.png/);
    await expect(live.update({ ipadapters: [regular({ style_image: MICRO_IP_MODEL })] })).rejects.toThrow(/ipadapters\.0\.style_image/);
    expect(live.getState().ipadapters[0]).toMatchObject({ scale: 0.8, style_image: STYLE_IMAGE });
    expect(same((await outputs(live, [5]))[0]!, before)).toBe(true);

    expect(await live.update({ ipadapters: [regular({ ipadapter_model_path: MICRO_PLUS, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder') })] })).toEqual({ applied: [], needsReload: ['ipadapters'] });
    expect(await live.update({ ipadapters: [] })).toEqual({ applied: [], needsReload: ['ipadapters'] });
    expect(live.getState().ipadapters[0]).toMatchObject({ ipadapter_model_path: MICRO_IP_MODEL, scale: 0.8 });
    await live.dispose();
  });

  it('feeds the negative image tokens to unconditional entries and a scale row per entry and step', async () => {
    const adapter = await createIpAdapter({ ipadapters: [regular({ scale: 2, step_schedule: 'ease in' })] });
    await adapter.attach({ model, runtime, width: SIZE, height: SIZE, frameBufferSize: 1, latentShape: [4, 8, 8] });
    const { layers, tokens } = adapter.describe();
    const width = model.capabilities.textEmbeddingWidth;
    const call = (unconditional: boolean[], steps: number[]) => {
      const frameOf: WrapperFrameV1 = { input: frame(0), images: new Map(), previousOutput: () => undefined };
      const batch = unconditional.length;
      return adapter.unetCall({ latents: new Float32Array(batch * 4 * 64), batch, timesteps: new Float32Array(batch).fill(500), steps, stepCount: 2, unconditional, textEmbeddings: new Float32Array(batch * 77 * width), frame: frameOf });
    };
    const both = await call([false, true], [0, 0]);
    const row = tokens * width;
    const cond = both.tokens!.subarray(0, row);
    const uncond = both.tokens!.subarray(row);
    expect(both.tokens).toHaveLength(2 * row);
    expect(same(cond, uncond)).toBe(false);
    expect(uncond.some((value) => value !== 0)).toBe(true); // diffusers' negative side: the projection of zeros, not zeros
    // Every frame of a layout gets the same arrays (the pipeline re-uses its merge of them).
    expect((await call([false, true], [0, 0])).tokens).toBe(both.tokens);
    const stepped = await call([false, false], [0, 1]);
    const scaleInput = stepped.inputs.ip_adapter_scale as HostTensor;
    expect(scaleInput.dims).toEqual([2, layers.length]);
    const scale = scaleInput.data as Float32Array;
    expect(Array.from(scale.subarray(0, layers.length))).toEqual(Array(layers.length).fill(Math.fround(2 * (0.05 + 0.95))));
    expect(Array.from(scale.subarray(layers.length))).toEqual(Array(layers.length).fill(Math.fround(2 * (0.05 + 0.95 * 0.5))));
    await adapter.dispose();
  });

  it('runs a plus adapter (16 tokens through the resampler) on the same UNet', async () => {
    const plus = await createIpAdapter({ ipadapters: [{ ipadapter_model_path: MICRO_PLUS, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder'), style_image: STYLE_IMAGE, type: 'plus' }] });
    expect(plus.extraTokens).toBe(16);
    expect(plus.describe()).toMatchObject({ kind: 'plus', tokens: 16 });
    const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [plus] });
    const on = (await outputs(stream, [0]))[0]!;
    await stream.update({ ipadapters: [{ ipadapter_model_path: MICRO_PLUS, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder'), style_image: STYLE_IMAGE, scale: 0 }] });
    // The random plus adapter steers less than the regular one (its tokens are smaller): any effect at all is the point.
    expect(maxDifference(on, (await outputs(stream, [0]))[0]!)).toBeGreaterThan(1e-3);
    await stream.dispose();
    await expect(createIpAdapter({ ipadapters: [{ ipadapter_model_path: MICRO_PLUS, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder'), type: 'regular' }] })).rejects.toThrow(/ipadapters\.0\.type.*plus/);
  });

  it('refuses an adapter that is not the one the UNet was exported with, and files that are not there', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sd-ip-other-'));
    try {
      await cp(MICRO_PLUS, directory, { recursive: true });
      const config = join(directory, 'image_projection', 'config.json');
      await writeFile(config, JSON.stringify({ ...JSON.parse(await readFile(config, 'utf8')), attention_id: 'another-adapter' }));
      const other = await createIpAdapter({ ipadapters: [{ ipadapter_model_path: directory, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder') }] });
      await expect(createStreamDiffusion({ model, prompt: 'a lighthouse', width: SIZE, height: SIZE, wrappers: [other] })).rejects.toThrow(ModelFolderError);
      await expect(createStreamDiffusion({ model, prompt: 'a lighthouse', width: SIZE, height: SIZE, wrappers: [await createIpAdapter({ ipadapters: [{ ipadapter_model_path: directory, image_encoder_path: join(MICRO_IP_MODEL, 'image_encoder') }] })] })).rejects.toThrow(/not the one the UNet/);
      await expect(createIpAdapter({ ipadapters: [{ ipadapter_model_path: join(directory, 'nothing') }] })).rejects.toThrow(ModelFolderError);
      await expect(createIpAdapter({ ipadapters: [{ ipadapter_model_path: MICRO_PLUS }] })).rejects.toThrow(/image encoder.*give image_encoder_path/);
      await expect(createIpAdapter({ ipadapters: [] })).rejects.toThrow(/ipadapters.*enabled: false/);
      await expect(createIpAdapter({ ipadapters: [{ ipadapter_model_path: MICRO_IP_MODEL, type: 'faceid' }] })).rejects.toThrow(/ipadapters\.0\.type.*FaceID/);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  describe('ipadapters in config files', () => {
    let directory: string;
    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), 'sd-ip-config-'));
      await cp(STYLE_IMAGE, join(directory, 'style.png'));
    });
    afterAll(async () => {
      await rm(directory, { recursive: true, force: true });
    });
    const write = async (name: string, lines: readonly string[]): Promise<string> => {
      const file = join(directory, name);
      await writeFile(file, `${lines.join('\n')}\n`);
      return file;
    };

    it('reads the forks’ keys, finds the adapter as model_id is found and the style image beside the config, and runs what it describes', async () => {
      const file = await write('style.yaml', [
        `model_id: ${MICRO_IP_MODEL}`,
        't_index_list: [30]',
        'width: 64',
        'height: 64',
        'use_ipadapter: true',
        'ipadapters:',
        `  - ipadapter_model_path: ${MICRO_IP_MODEL}`,
        `    image_encoder_path: ${join(MICRO_IP_MODEL, 'image_encoder')}`,
        '    style_image: style.png',
        '    scale: 0.7',
        '    weight_type: style transfer',
        '    enabled: true',
        '    type: regular',
      ]);
      const loaded = await loadConfig(file, { wrapperParameters: ipAdapterConfigFields });
      expect(loaded.warnings).toEqual([]);
      const adapter = await ipAdapterFromConfig(loaded);
      expect(adapter).toBeDefined();
      const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers: [adapter!] });
      const reference = await pipeline(regular({ scale: 0.7, weight_type: 'style transfer' }));
      expect(same((await outputs(stream, [2]))[0]!, (await outputs(reference, [2]))[0]!)).toBe(true);
      await Promise.all([stream.dispose(), reference.dispose()]);
    });

    it('names file, line and key for a bad entry or a weights file; use_ipadapter: false gives no wrapper', async () => {
      const bad = await write('bad.yaml', [`model_id: ${MICRO_IP_MODEL}`, 'ipadapters:', `  - ipadapter_model_path: ${MICRO_IP_MODEL}`, '    scale: strong']);
      await expect(loadConfig(bad, { wrapperParameters: ipAdapterConfigFields })).rejects.toMatchObject({ line: 4, key: 'ipadapters.0.scale' });

      const weights = await write('weights.yaml', [`model_id: ${MICRO_IP_MODEL}`, 'ipadapters:', '  - ipadapter_model_path: h94/IP-Adapter/models/ip-adapter_sd15.safetensors', '    image_encoder_path: h94/IP-Adapter/models/image_encoder']);
      const error = await ipAdapterFromConfig(await loadConfig(weights, { wrapperParameters: ipAdapterConfigFields })).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ line: 3, key: 'ipadapters.0.ipadapter_model_path' });
      expect((error as Error).message).toMatch(/export it into the model folder first/);

      // Editors get the field's JSON Schema (style images as paths there: pixels exist only in code).
      const schema = configJsonSchema({ wrapperParameters: ipAdapterConfigFields }) as { properties: Record<string, { maxItems?: number; items?: { properties: Record<string, { enum?: string[]; type?: string }> } }> };
      expect(schema.properties.ipadapters).toMatchObject({ maxItems: 1, items: { properties: { style_image: { type: 'string' }, weight_type: { enum: expect.arrayContaining(['style transfer', 'composition']) } } } });

      const off = await write('off.yaml', [`model_id: ${MICRO_IP_MODEL}`, 'use_ipadapter: false', 'ipadapters:', `  - ipadapter_model_path: ${MICRO_IP_MODEL}`]);
      const switched = await loadConfig(off, { wrapperParameters: ipAdapterConfigFields });
      expect(await ipAdapterFromConfig(switched)).toBeUndefined();
      expect(switched.warnings.map((warning) => warning.message)).toEqual([`${off}:3: ipadapters: ignored: use_ipadapter is false`]);
    });
  });
});
