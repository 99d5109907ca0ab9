import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  configToStreamDiffusionOptions,
  createRuntime,
  createStreamDiffusion,
  InvalidArgumentError,
  loadModel,
  readModelFolder,
  streamDiffusionConfigSchema,
  type LoadedModel,
  type Runtime,
  type StreamDiffusionConfigInput,
} from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel, readModel } from '../onnx/onnx-model.js';
import { onnxSignature, parseEnginePlanOptions, planEngines, unetBatchRange, unetBatchSize, type PlannedEngine } from './engine-plan.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const TINY = join(ROOT, 'fixtures/models/tiny-sd-turbo');
const CONTROLNET_MODEL = join(ROOT, 'fixtures/models/micro-sd-turbo-controlnet');
const IP_ADAPTER_MODEL = join(ROOT, 'fixtures/models/micro-sd-turbo-ipadapter');
const CANNY = join(ROOT, 'fixtures/controlnets/micro-canny');
const SIX_CHANNELS = join(ROOT, 'fixtures/controlnets/micro-6ch/model.onnx');

const config = (input: Omit<StreamDiffusionConfigInput, 'model_id'> = {}) => streamDiffusionConfigSchema.parse({ model_id: TINY, ...input });
const profile = (engine: PlannedEngine | undefined, name: string) => engine?.inputs.find((input) => input.name === name);
const engineNamed = (engines: readonly PlannedEngine[], name: string) => engines.find((engine) => engine.name === name);

describe('the UNet batch of an engine plan, checked against core’s pipeline on the tiny model (CPU)', () => {
  let runtime: Runtime;
  let model: LoadedModel;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: TINY });
  });
  afterAll(async () => {
    await model.dispose();
    await runtime.dispose();
  });

  /** The batch of every call each model got while the pipeline ran `calls` img2img calls. */
  async function observedBatches(input: Omit<StreamDiffusionConfigInput, 'model_id'>, calls: number): Promise<Record<string, Set<number>>> {
    const seen: Record<string, Set<number>> = {};
    const sessions = new Proxy(model.sessions, {
      get(target, property) {
        if (property === 'run') {
          return (name: string, inputs: Record<string, { dims: readonly number[] }>, options: unknown) => {
            const first = Object.values(inputs)[0]!;
            (seen[name] ??= new Set()).add(first.dims[0]!);
            return (target.run as (...args: unknown[]) => unknown)(name, inputs, options);
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const parsed = config({ width: 64, height: 64, ...input });
    const stream = await createStreamDiffusion({ model: { ...model, sessions }, ...configToStreamDiffusionOptions(parsed) });
    const image = { data: new Uint8Array(64 * 64 * 3).fill(90), width: 64, height: 64, channels: 3 as const };
    for (let call = 0; call < calls; call += 1) await stream.img2img(Array.from({ length: parsed.frame_buffer_size }, () => image));
    return seen;
  }

  const cases: Omit<StreamDiffusionConfigInput, 'model_id'>[] = [
    { cfg_type: 'none', t_index_list: [10, 30], frame_buffer_size: 1 },
    { cfg_type: 'self', guidance_scale: 1.5, t_index_list: [10, 30], frame_buffer_size: 2 },
    { cfg_type: 'initialize', guidance_scale: 1.5, t_index_list: [5, 20, 40], frame_buffer_size: 1 },
    { cfg_type: 'full', guidance_scale: 2, t_index_list: [10, 30], frame_buffer_size: 2 },
    { cfg_type: 'full', guidance_scale: 1, t_index_list: [10, 30], frame_buffer_size: 1 },
    { cfg_type: 'initialize', guidance_scale: 1.5, t_index_list: [10, 30], frame_buffer_size: 2, use_denoising_batch: false },
    { cfg_type: 'full', guidance_scale: 3, t_index_list: [10, 30], frame_buffer_size: 1, use_denoising_batch: false },
  ];
  for (const input of cases) {
    it(`plans the batch the UNet really gets: ${JSON.stringify(input)}`, async () => {
      const seen = await observedBatches(input, 2);
      const parsed = config(input);
      const range = unetBatchRange(parsed);
      // The pipeline runs at the config's guidance scale: the plan's opt batch.
      expect([...seen.unet!]).toEqual([range.opt]);
      expect(range.opt).toBe(unetBatchSize(parsed, parsed.guidance_scale > 1));
      // The VAE sees the f frames of one call.
      expect([...seen.vae_encoder!]).toEqual([parsed.frame_buffer_size]);
      expect([...seen.vae_decoder!]).toEqual([parsed.frame_buffer_size]);
    });
  }

  it('spans the batches a hot guidance_scale change moves between (guidance off, then on)', async () => {
    const inputs: Omit<StreamDiffusionConfigInput, 'model_id'>[] = [
      { cfg_type: 'full', t_index_list: [10, 30], frame_buffer_size: 2 },
      { cfg_type: 'initialize', t_index_list: [10, 30], frame_buffer_size: 1 },
    ];
    for (const input of inputs) {
      const off = await observedBatches({ ...input, guidance_scale: 1 }, 1);
      const on = await observedBatches({ ...input, guidance_scale: 2 }, 1);
      const range = unetBatchRange(config({ ...input, guidance_scale: 1 }));
      expect([range.min, range.max]).toEqual([...off.unet!, ...on.unet!]);
      expect(range.max).toBeGreaterThan(range.min);
    }
  });
});

describe('planEngines', () => {
  it('plans the UNet, the VAE encoder and decoder of the tiny model, with profiles for every dynamic ONNX input', async () => {
    const plan = await planEngines({ config: config({ width: 512, height: 384, t_index_list: [20, 40], cfg_type: 'self', guidance_scale: 1.2 }), model: TINY });
    expect(plan.engines.map((engine) => engine.name)).toEqual(['unet', 'vae_encoder', 'vae_decoder']);
    const folder = await readModelFolder(TINY);
    const factor = folder.vae.spatialFactor;
    for (const engine of plan.engines) {
      const dynamic = onnxSignature(await readModel(engine.onnx)).inputs.filter((input) => input.shape.some((dim) => typeof dim === 'string'));
      expect(engine.inputs.map((input) => input.name)).toEqual(dynamic.map((input) => input.name));
      expect(engine.precision).toBe('fp16');
    }
    const unet = engineNamed(plan.engines, 'unet');
    expect(unet?.variant).toEqual({ controlNet: false, ipAdapter: false });
    expect(unet?.batch).toEqual({ min: 2, opt: 2, max: 2 });
    expect(profile(unet, 'sample')).toEqual({ name: 'sample', min: [2, 4, 256 / factor, 256 / factor], opt: [2, 4, 384 / factor, 512 / factor], max: [2, 4, 1024 / factor, 1024 / factor] });
    expect(profile(unet, 'timestep')).toEqual({ name: 'timestep', min: [2], opt: [2], max: [2] });
    expect(profile(unet, 'encoder_hidden_states')?.opt).toEqual([2, 77, 32]);
    expect(profile(engineNamed(plan.engines, 'vae_encoder'), 'sample')).toEqual({ name: 'sample', min: [1, 3, 256, 256], opt: [1, 3, 384, 512], max: [1, 3, 1024, 1024] });
    expect(profile(engineNamed(plan.engines, 'vae_decoder'), 'latent_sample')?.max).toEqual([1, 4, 1024 / factor, 1024 / factor]);
  });

  it('plans static engines at the config size, leaves the encoder out for txt2img, and applies precision and batch overrides', async () => {
    const plan = await planEngines({
      config: config({ mode: 'txt2img', width: 320, height: 448, frame_buffer_size: 3, cfg_type: 'none' }),
      model: TINY,
      options: { resolution: 'static', precision: 'fp32', minBatch: 2, optBatch: 6, maxBatch: 8 },
    });
    expect(plan.engines.map((engine) => engine.name)).toEqual(['unet', 'vae_decoder']);
    const unet = engineNamed(plan.engines, 'unet')!;
    expect(unet.precision).toBe('fp32');
    const sample = profile(unet, 'sample')!;
    expect([sample.min[0], sample.opt[0], sample.max[0]]).toEqual([2, 6, 8]);
    expect(sample.min.slice(2)).toEqual(sample.max.slice(2));
    expect(profile(engineNamed(plan.engines, 'vae_decoder'), 'latent_sample')?.min[0]).toBe(3);
  });

  it('plans the ControlNet UNet variant and one engine per ControlNet, residuals at their latent sizes', async () => {
    const plan = await planEngines({ config: config({ width: 512, height: 512, cfg_type: 'initialize', guidance_scale: 1.5, t_index_list: [20, 40] }), model: CONTROLNET_MODEL, controlnets: [CANNY, SIX_CHANNELS] });
    expect(plan.engines.map((engine) => engine.name)).toEqual(['unet', 'vae_encoder', 'vae_decoder', 'controlnet-0', 'controlnet-1']);
    const unet = engineNamed(plan.engines, 'unet');
    expect(unet?.variant).toEqual({ controlNet: true, ipAdapter: false });
    expect(unet?.batch).toEqual({ min: 2, opt: 3, max: 3 });
    expect(profile(unet, 'down_block_residual_0')?.opt).toEqual([3, 4, 64, 64]);
    expect(profile(unet, 'down_block_residual_4')?.opt).toEqual([3, 4, 32, 32]);
    expect(profile(unet, 'down_block_residual_7')?.opt).toEqual([3, 8, 16, 16]);
    expect(profile(unet, 'mid_block_residual')?.max).toEqual([3, 8, 16, 16]);
    const [canny, six] = [engineNamed(plan.engines, 'controlnet-0'), engineNamed(plan.engines, 'controlnet-1')];
    expect(canny?.onnx).toBe(join(CANNY, 'model.onnx'));
    expect(profile(canny, 'controlnet_cond')?.opt).toEqual([3, 3, 512, 512]);
    expect(profile(six, 'controlnet_cond')?.opt).toEqual([3, 6, 512, 512]);
    expect(profile(six, 'encoder_hidden_states')?.max).toEqual([3, 77, 32]);
  });

  it('plans the IP-Adapter UNet variant: image tokens fixed when known, 4–16 when not', async () => {
    const known = await planEngines({ config: config({ cfg_type: 'none' }), model: IP_ADAPTER_MODEL, ipAdapterImageTokens: 16 });
    const unet = engineNamed(known.engines, 'unet');
    expect(unet?.variant).toEqual({ controlNet: false, ipAdapter: true });
    expect(profile(unet, 'encoder_hidden_states')).toMatchObject({ min: [2, 93, 32], max: [2, 93, 32] });
    expect(profile(unet, 'ip_adapter_scale')?.opt).toEqual([2, 16]);
    const unknown = await planEngines({ config: config({ cfg_type: 'none' }), model: IP_ADAPTER_MODEL });
    expect(profile(engineNamed(unknown.engines, 'unet'), 'encoder_hidden_states')).toMatchObject({ min: [2, 81, 32], max: [2, 93, 32] });
  });

  describe('errors name the field, the value and what was expected', () => {
    const rejects = async (promise: Promise<unknown>, field: string, pattern: RegExp) => {
      const error = await promise.then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe(field);
      expect((error as Error).message).toMatch(pattern);
    };

    it('for bad options', () => {
      expect(() => parseEnginePlanOptions({ maxResolution: 1000 })).toThrow(/^maxResolution: expected .*multiple of 64.*, got 1000$/);
      expect(() => parseEnginePlanOptions({ precision: 'int8' })).toThrow(/^precision: expected .*fp16.*, got "int8"$/);
      expect(() => parseEnginePlanOptions({ resolutions: 'dynamic' })).toThrow(/^resolutions: expected one of resolution, minResolution/);
      expect(() => parseEnginePlanOptions({ minResolution: 768, maxResolution: 512 })).toThrow(/^minResolution: expected at most maxResolution \(512\), got 768$/);
      expect(() => parseEnginePlanOptions({ minBatch: 0 })).toThrow(/^minBatch: expected .*, got 0$/);
    });

    it('for a config outside the plan, inconsistent batches, and ControlNets for a UNet without residual inputs', async () => {
      await rejects(planEngines({ config: config({ width: 1280 }), model: TINY }), 'width', /expected 256–1024 .*got 1280/);
      await rejects(planEngines({ config: config(), model: TINY, options: { minBatch: 4, maxBatch: 2 } }), 'minBatch', /minBatch ≤ optBatch ≤ maxBatch \(the plan has 4 ≤ 2 ≤ 2\), got 4$/);
      await rejects(planEngines({ config: config(), model: TINY, options: { maxBatch: 1 } }), 'maxBatch', /got 1$/);
      await rejects(planEngines({ config: config(), model: TINY, controlnets: [CANNY] }), 'controlnets', /takes no ControlNet residual inputs/);
    });

    it('for a profile that a fixed ONNX dim cannot take', async () => {
      const folder = await mkdtemp(join(tmpdir(), 'sd-plan-'));
      try {
        // The tiny UNet re-exported with a fixed batch of 1.
        const unet = await readModel(join(TINY, 'unet/model.onnx'));
        unet.graph!.input!.find((input) => input.name === 'sample')!.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
        const path = join(folder, 'unet.onnx');
        await writeFile(path, encodeModel(unet));
        const tiny = await readModelFolder(TINY);
        await rejects(planEngines({ config: config({ cfg_type: 'none' }), model: { ...tiny, models: { ...tiny.models, unet: path } } }), 'unet.sample[0]', /expected 1: .*unet\.onnx fixes this dim.*got 2$/);
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    });
  });
});
