import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelFolderError } from '../errors/errors.js';
import { createRuntime, type Runtime } from '../runtime/runtime.js';
import { loadModel } from './load-model.js';
import { readModelFolder } from './model-folder.js';

const fixtures = fileURLToPath(new URL('../../../../fixtures/models/', import.meta.url));
const runtimeFixtures = fileURLToPath(new URL('../../test-fixtures/runtime/', import.meta.url));

/** A private copy of a fixture folder, for one test to break. */
async function copyOf(name: string): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'model-folder-'));
  await cp(join(fixtures, name), folder, { recursive: true });
  copies.push(folder);
  return folder;
}
const copies: string[] = [];

describe('model folders', () => {
  let runtime: Runtime;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
  });
  afterAll(async () => {
    await runtime.dispose();
  });
  afterEach(async () => {
    await Promise.all(copies.splice(0).map((folder) => rm(folder, { recursive: true, force: true })));
  });

  it('loads the tiny SD-Turbo folder and detects what it can do from the ONNX names', async () => {
    const model = await loadModel({ runtime, folder: join(fixtures, 'tiny-sd-turbo') });
    try {
      expect(model.capabilities).toMatchObject({
        dtype: 'fp32',
        latentChannels: 4,
        latentHeight: null,
        latentWidth: null,
        batch: null,
        imageToImage: true,
        controlNet: null,
        ipAdapter: null,
        vae: { kind: 'taesd', scalingFactor: 1, spatialFactor: 8 },
      });
      expect(model.capabilities.textEmbeddingWidth).toBe(32);
      expect(model.folder.scheduler).toMatchObject({ beta_schedule: 'scaled_linear', num_train_timesteps: 1000 });
      expect((await runtime.stats()).sessions).toBe(4);
    } finally {
      await model.dispose();
    }
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('loads given sources instead of the folder\'s files (LoRAs merged before loading), and nothing when one is bad', async () => {
    const folder = join(fixtures, 'tiny-sd-turbo');
    const unet = join(folder, 'unet', 'model.onnx');
    const textEncoder = join(folder, 'text_encoder', 'model.onnx');
    const plain = await loadModel({ runtime, folder });
    const swapped = await loadModel({ runtime, folder, sources: { text_encoder: { path: textEncoder, bytes: new Uint8Array(await readFile(textEncoder)) } } });
    try {
      const a = await (await plain.prompts.encode('a lighthouse')).float32();
      const b = await (await swapped.prompts.encode('a lighthouse')).float32();
      expect(Array.from(b)).toEqual(Array.from(a)); // the same bytes given as a source: the same model
      expect(swapped.capabilities).toEqual(plain.capabilities);
    } finally {
      await plain.dispose();
      await swapped.dispose();
    }
    // Bytes that are no model, at the UNet's path (whose file is fine): the source was what loaded.
    const broken = await loadModel({ runtime, folder, sources: { unet: { path: unet, bytes: new Uint8Array([1, 2, 3]) } } }).catch((caught: unknown) => caught);
    expect(broken).toMatchObject({ name: 'ModelFolderError', path: unet });
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('reads the KL VAE scaling factor from the fp16 folder config', async () => {
    const model = await loadModel({ runtime, folder: join(fixtures, 'tiny-sd15-fp16') });
    try {
      expect(model.capabilities.dtype).toBe('fp16');
      expect(model.capabilities.vae).toEqual({ kind: 'kl', scalingFactor: 0.18215, spatialFactor: 8 });
    } finally {
      await model.dispose();
    }
  });

  it('names a missing model file', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    await rm(join(folder, 'unet', 'model.onnx'));
    await expect(readModelFolder(folder)).rejects.toMatchObject({
      name: 'ModelFolderError',
      problem: 'missing-file',
      path: join(folder, 'unet', 'model.onnx'),
    });
  });

  it('names a missing model_index.json', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    await rm(join(folder, 'model_index.json'));
    await expect(readModelFolder(folder)).rejects.toMatchObject({ problem: 'missing-file', path: join(folder, 'model_index.json') });
  });

  it('names a folder that does not exist', async () => {
    await expect(readModelFolder('/nonexistent/model')).rejects.toBeInstanceOf(ModelFolderError);
  });

  it('reports a truncated .onnx as corrupt and loads nothing', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    const path = join(folder, 'vae_decoder', 'model.onnx');
    await truncate(path, 100);
    const error = await loadModel({ runtime, folder }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect(error).toMatchObject({ problem: 'corrupt-model', path });
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('reports garbage bytes in an .onnx as corrupt', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    const path = join(folder, 'text_encoder', 'model.onnx');
    await writeFile(path, Buffer.from('this is not a protobuf at all, just text'.repeat(20)));
    await expect(loadModel({ runtime, folder })).rejects.toMatchObject({ problem: 'corrupt-model', path });
  });

  it('rejects a UNet whose input names are wrong, naming the input and what it found', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    await cp(join(runtimeFixtures, 'relu.onnx'), join(folder, 'unet', 'model.onnx'));
    const error = await loadModel({ runtime, folder }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ problem: 'bad-signature', path: join(folder, 'unet', 'model.onnx') });
    expect((error as Error).message).toMatch(/no input "sample" \(its inputs: x: float32 \[batch, 4\]\)/);
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('rejects an input of the wrong rank', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    await cp(join(runtimeFixtures, 'bad-rank-unet.onnx'), join(folder, 'unet', 'model.onnx'));
    const error = await loadModel({ runtime, folder }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ problem: 'bad-signature' });
    expect((error as Error).message).toMatch(/the unet input "sample" has rank 3 \(float32 \[batch, 4, height\]\); expected rank 4/);
  });

  it('rejects an unknown beta schedule, naming the value', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    const path = join(folder, 'scheduler', 'scheduler_config.json');
    const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...config, beta_schedule: 'cosine_wobble' }));
    const error = await readModelFolder(folder).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ problem: 'unknown-beta-schedule', path });
    expect((error as Error).message).toMatch(/"cosine_wobble" is not one of linear, scaled_linear, squaredcos_cap_v2/);
  });

  it('names a missing tokenizer file', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    await rm(join(folder, 'tokenizer', 'merges.txt'));
    await expect(readModelFolder(folder)).rejects.toMatchObject({
      problem: 'missing-tokenizer-file',
      path: join(folder, 'tokenizer', 'merges.txt'),
    });
  });

  it('names a config that is not JSON', async () => {
    const folder = await copyOf('tiny-sd-turbo');
    const path = join(folder, 'vae_decoder', 'config.json');
    await writeFile(path, '{ "scaling_factor": ');
    await expect(readModelFolder(folder)).rejects.toMatchObject({ problem: 'bad-config', path });
  });

  it('never guesses a missing VAE scaling factor', async () => {
    const folder = await copyOf('tiny-sd15-fp16');
    const path = join(folder, 'vae_decoder', 'config.json');
    const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    delete config.scaling_factor;
    await writeFile(path, JSON.stringify(config));
    await expect(readModelFolder(folder)).rejects.toThrow(/"scaling_factor" is missing/);
  });
});
