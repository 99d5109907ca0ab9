import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamDiffusionError } from '../errors/streamdiffusion-error.js';
import { loadModel } from '../model-folder/load-model.js';
import { createStreamDiffusion } from '../pipeline/stream-diffusion.js';
import { createRuntime } from '../runtime/runtime.js';
import { FIXTURES } from '../../test-support/goldens.js';
import { ConfigError } from './config-error.js';
import { configJsonSchema, configToStreamDiffusionOptions, loadConfig, saveConfig, type StreamDiffusionConfigInput } from './load-config.js';
import { streamParametersShape } from './stream-parameters.js';
import { createMockWrapper } from '../test/mock-wrapper.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'streamdiffusion-config-'));
  await mkdir(join(directory, 'model'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = join(directory, name);
  await writeFile(file, text);
  return file;
}

async function configErrorOf(promise: Promise<unknown>): Promise<ConfigError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ConfigError);
  expect(StreamDiffusionError.isInstance(error)).toBe(true);
  return error as ConfigError;
}

describe('loadConfig', () => {
  it('honours the keys we support in a Python-fork YAML config', async () => {
    const file = await write(
      'full.yaml',
      [
        'model_id: model',
        't_index_list: [10, 30]',
        'num_inference_steps: 40',
        'width: 256',
        'height: 128',
        'prompt: "a lighthouse at dusk"',
        'negative_prompt: blurry',
        'guidance_scale: 1.4',
        'delta: 0.8',
        'seed: 42',
        'frame_buffer_size: 2',
        'use_denoising_batch: false',
        'do_add_noise: false',
        'cfg_type: full',
        'acceleration: none',
        'mode: txt2img',
        'enable_similar_image_filter: true',
        'similar_image_filter_threshold: 0.95',
        'similar_image_filter_max_skip_frame: 3',
        '',
      ].join('\n'),
    );
    const { config, warnings, modelFolder, file: loadedFile } = await loadConfig(file);
    expect(warnings).toEqual([]);
    expect(loadedFile).toBe(file);
    expect(modelFolder).toBe(join(directory, 'model'));
    expect(config.mode).toBe('txt2img');
    expect(configToStreamDiffusionOptions(config)).toEqual({
      prompt: 'a lighthouse at dusk',
      negativePrompt: 'blurry',
      tIndexList: [10, 30],
      numInferenceSteps: 40,
      width: 256,
      height: 128,
      frameBufferSize: 2,
      cfgType: 'full',
      guidanceScale: 1.4,
      delta: 0.8,
      seed: 42,
      addNoise: false,
      useDenoisingBatch: false,
      normalizePromptWeights: true,
      normalizeSeedWeights: true,
      similarityFilter: { threshold: 0.95, maxSkipFrames: 3 },
    });
  });

  it('reads JSON too, with defaults for what it leaves out and the filter off', async () => {
    const file = await write('small.json', JSON.stringify({ model_id: 'model', prompt: 'x' }, null, 2));
    const { config, warnings } = await loadConfig(file);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ prompt: 'x', t_index_list: [32, 45], guidance_scale: 1.2, cfg_type: 'self', acceleration: 'none' });
    expect(configToStreamDiffusionOptions(config).similarityFilter).toBe(false);
  });

  it('warns about each unsupported and unknown key with its line, and still loads', async () => {
    const file = await write(
      'extras.yaml',
      [
        'model_id: model', // 1
        'acceleration: tensorrt', // 2
        'controlnets:', // 3
        '  - model_id: thibaud/controlnet-sd21-depth-diffusers', // 4
        '    conditioning_scale: 0.5', // 5
        'lora_dict: {a: 1}', // 6
        'engine_dir: engines', // 7
        'use_lcm_lora: true', // 8
        'ipadapters: []', // 9
        'favourite_colour: blue', // 10
        'prompt_blending: [[a cat, 0.5], [a dog, 0.5]]', // 11
        '',
      ].join('\n'),
    );
    const { warnings, config } = await loadConfig(file);
    expect(warnings.map(({ kind, key, line }) => [kind, key, line])).toEqual([
      ['unsupported-key', 'controlnets', 3],
      ['unsupported-key', 'lora_dict', 6],
      ['unsupported-key', 'engine_dir', 7],
      ['unsupported-key', 'use_lcm_lora', 8],
      ['unsupported-key', 'ipadapters', 9],
      ['unknown-key', 'favourite_colour', 10],
      ['unsupported-key', 'acceleration', 2],
    ]);
    expect(warnings[0]!.message).toBe(`${file}:3: controlnets: ignored: ControlNets need @streamdiffusion/controlnet (pass its controlNetConfigFields as wrapperParameters)`);
    expect(config.prompt_blending).toEqual([['a cat', 0.5], ['a dog', 0.5]]);
    expect(config).not.toHaveProperty('favourite_colour');
  });

  it('raises a ConfigError with file, line and key for a bad value (YAML)', async () => {
    const file = await write('bad.yaml', ['model_id: model', 'prompt: a cat', 'seed: 1', 'guidance_scale: "high"', ''].join('\n'));
    const error = await configErrorOf(loadConfig(file));
    expect(error).toMatchObject({ file, line: 4, key: 'guidance_scale', code: 'config' });
    expect(error.message).toContain(`${file}:4: guidance_scale:`);
    expect(error.message).toContain('expected number');
    expect(error.message).toContain('got "high"');
    expect(error.message).toContain('Guidance scale');
  });

  it('raises a ConfigError at the offending list entry (JSON)', async () => {
    const file = await write('bad.json', '{\n  "model_id": "model",\n  "num_inference_steps": 20,\n  "t_index_list": [\n    0,\n    25\n  ]\n}\n');
    const error = await configErrorOf(loadConfig(file));
    expect(error).toMatchObject({ file, line: 6, key: 't_index_list.1' });
    expect(error.message).toContain('below num_inference_steps (20)');
  });

  it('raises a ConfigError for an enum value, a syntax error, a missing model_id and a bad extension', async () => {
    const cfg = await configErrorOf(loadConfig(await write('cfg.yaml', 'model_id: model\ncfg_type: strong\n')));
    expect(cfg).toMatchObject({ line: 2, key: 'cfg_type' });
    expect(cfg.message).toMatch(/none.*self.*initialize.*full/);
    const syntax = await configErrorOf(loadConfig(await write('syntax.json', '{\n  "model_id": "model",\n  "seed": ,\n}\n')));
    expect(syntax.line).toBe(3);
    const missing = await configErrorOf(loadConfig(await write('missing.yaml', 'prompt: x\n')));
    expect(missing).toMatchObject({ key: 'model_id', line: undefined });
    const extension = await configErrorOf(loadConfig(await write('config.toml', 'model_id = "model"\n')));
    expect(extension.message).toContain('.yaml, .yml or .json');
  });

  it('resolves model_id as a path, then in modelsDir, then as an HF-style id with "--"', async () => {
    const models = join(directory, 'models');
    await mkdir(join(models, 'local-model'), { recursive: true });
    await mkdir(join(models, 'stabilityai--sd-turbo'), { recursive: true });
    const named = await write('named.yaml', 'model_id: local-model\n');
    expect((await loadConfig(named, { modelsDir: models })).modelFolder).toBe(join(models, 'local-model'));
    const hub = await write('hub.yaml', 'model_id: stabilityai/sd-turbo\n');
    expect((await loadConfig(hub, { modelsDir: models })).modelFolder).toBe(join(models, 'stabilityai--sd-turbo'));
    const absolute = await write('absolute.json', JSON.stringify({ model_id: join(models, 'local-model') }));
    expect((await loadConfig(absolute)).modelFolder).toBe(join(models, 'local-model'));
  });

  it('names every folder it tried when model_id resolves to nothing', async () => {
    const models = join(directory, 'models');
    const file = await write('absent.yaml', 'prompt: x\nmodel_id: someone/absent-model\n');
    const error = await configErrorOf(loadConfig(file, { modelsDir: models }));
    expect(error).toMatchObject({ file, line: 2, key: 'model_id' });
    expect(error.message).toContain(join(directory, 'someone', 'absent-model'));
    expect(error.message).toContain(join(models, 'someone', 'absent-model'));
    expect(error.message).toContain(join(models, 'someone--absent-model'));
    const withoutModelsDir = await configErrorOf(loadConfig(file));
    expect(withoutModelsDir.message).toContain('modelsDir');
  });
});

describe('saveConfig', () => {
  const config: StreamDiffusionConfigInput = {
    model_id: 'model',
    prompt: 'a lighthouse: at dusk # not a comment',
    negative_prompt: '',
    t_index_list: [0, 16, 32],
    seed: 123,
    guidance_scale: 1.5,
    cfg_type: 'initialize',
    enable_similar_image_filter: true,
    prompt_blending: { prompt_list: [['a cat', 0.25], ['a dog', 0.75]], interpolation_method: 'linear' },
    seed_blending: [[1, 0.5], [2, 0.5]],
  };

  for (const name of ['saved.yaml', 'saved.yml', 'saved.json']) {
    it(`round-trips through loadConfig as ${name}`, async () => {
      const file = join(directory, name);
      await saveConfig(file, config);
      const loaded = await loadConfig(file);
      const again = await loadConfig(file);
      expect(loaded.config).toEqual(again.config);
      expect(loaded.config).toMatchObject(config);
      // Blending is applied by the pipeline now: no warnings.
      expect(loaded.warnings).toEqual([]);
      // Saving the loaded config gives the same file: nothing drifts on a second round.
      const text = await readFile(file, 'utf8');
      await saveConfig(file, loaded.config);
      expect(await readFile(file, 'utf8')).toBe(text);
    });
  }

  it('refuses an invalid config without touching the file', async () => {
    const file = join(directory, 'refused.yaml');
    const error = await configErrorOf(saveConfig(file, { ...config, width: 100 }));
    expect(error).toMatchObject({ key: 'width', file });
    await expect(readFile(file)).rejects.toThrow();
  });
});

describe('configJsonSchema', () => {
  it('lists every field with its description and update kind', () => {
    const schema = configJsonSchema() as { properties: Record<string, { description?: string; update?: string }>; required?: string[] };
    const fields = [...Object.keys(streamParametersShape), 'model_id', 'mode', 'acceleration'];
    expect(Object.keys(schema.properties).sort()).toEqual(fields.sort());
    for (const field of fields) {
      expect(schema.properties[field]?.description, field).toMatch(/\w{3}/);
      expect(['hot', 'reload', 'rebuild'], field).toContain(schema.properties[field]?.update);
    }
    expect(schema.properties.guidance_scale).toMatchObject({ type: 'number', minimum: 0, default: 1.2, update: 'hot' });
    expect(schema.properties.width?.update).toBe('reload');
    expect(schema.required).toEqual(['model_id']);
  });
});

describe('wrapper fields in config files', () => {
  const wrapperParameters = createMockWrapper().parameters;

  it('honours and validates a wrapper’s keys like the pipeline’s, with file, line and key', async () => {
    const file = await write('wrapped.yaml', ['model_id: model', 'mock_residual: 0.5', 'controlnets: []', 'mock_variant: c', ''].join('\n'));
    const error = await configErrorOf(loadConfig(file, { wrapperParameters }));
    expect(error).toMatchObject({ key: 'mock_variant', line: 4 });
    expect(error.message).toContain('A choice that needs a new pipeline.');

    await writeFile(file, ['model_id: model', 'mock_residual: 0.5', 'controlnets: []', ''].join('\n'));
    const { config, warnings } = await loadConfig(file, { wrapperParameters });
    expect(config).toMatchObject({ mock_residual: 0.5, mock_token: 0, mock_variant: 'a' });
    // Keys no wrapper owns are still warned about; without the wrapper its keys are unknown.
    expect(warnings.map((warning) => warning.key)).toEqual(['controlnets']);
    expect((await loadConfig(file)).warnings.map((warning) => [warning.key, warning.kind])).toEqual([
      ['mock_residual', 'unknown-key'],
      ['controlnets', 'unsupported-key'],
    ]);

    await saveConfig(join(directory, 'wrapped-saved.json'), config, { wrapperParameters });
    expect((await loadConfig(join(directory, 'wrapped-saved.json'), { wrapperParameters })).config).toEqual(config);
  });

  it('puts wrapper fields in the JSON Schema, and refuses one that shadows a config key', () => {
    const schema = configJsonSchema({ wrapperParameters }) as { properties: Record<string, { description?: string; update?: string }> };
    expect(schema.properties.mock_residual).toMatchObject({ type: 'number', update: 'hot', description: 'Value of every UNet input the mock feeds.' });
    expect(schema.properties.prompt).toMatchObject({ update: 'hot' });
    expect(() => configJsonSchema({ wrapperParameters: { seed: wrapperParameters.mock_residual } })).toThrow(/wrapperParameters: expected keys the config does not already have, got "seed"/);
  });
});

describe('a config driving the pipeline (tiny model, CPU)', () => {
  it('loads a config that points at the fixture model and runs one img2img frame at 64 × 64', async () => {
    const modelPath = join(FIXTURES, 'models', 'tiny-sd-turbo');
    const file = await write(
      'tiny.yaml',
      [`model_id: ${JSON.stringify(relative(directory, modelPath))}`, 'prompt: a lighthouse', 't_index_list: [0]', 'width: 64', 'height: 64', 'seed: 7', ''].join('\n'),
    );
    const { config, modelFolder, warnings } = await loadConfig(file);
    expect(warnings).toEqual([]);
    expect(modelFolder).toBe(modelPath.replace(/\/$/, ''));
    const runtime = await createRuntime({ device: 'cpu' });
    try {
      const model = await loadModel({ runtime, folder: modelFolder });
      try {
        const stream = await createStreamDiffusion({ model, ...configToStreamDiffusionOptions(config) });
        const data = new Uint8Array(64 * 64 * 3).map((_, index) => (index * 7) % 256);
        const result = await stream.img2img({ data, width: 64, height: 64, channels: 3 });
        expect(result.warm).toBe(true);
        expect(result.images).toHaveLength(1);
        expect(result.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
      } finally {
        await model.dispose();
      }
    } finally {
      await runtime.dispose();
    }
  });
});
