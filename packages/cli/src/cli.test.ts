import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readImage } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fromRoot } from '../test-support/run-cli.js';
import { EXIT_CODES } from './io.js';

const MODEL = fromRoot('fixtures/models/tiny-sd-turbo');
const EXAMPLE = fromRoot('fixtures/images/example.png');
const IMAGES = fromRoot('fixtures/images');


const small = ['--model', MODEL, '--width', '64', '--height', '64', '--cfg-type', 'none'];

describe('the streamdiffusion command', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sd-cli-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  describe('--help', () => {
    for (const command of [[], ['img2img'], ['txt2img'], ['config', 'validate'], ['models', 'list'], ['models', 'verify'], ['models', 'pull'], ['comfy', 'generate'], ['comfy', 'install'], ['export'], ['bench'], ['serve'], ['stream'], ['build-engines'], ['engines', 'list'], ['engines', 'prune']]) {
      it(`prints the help of ${['streamdiffusion', ...command].join(' ')} (flags generated from the parameter schema)`, async () => {
        const { code, stdout } = await cli(...command, '--help');
        expect(code).toBe(EXIT_CODES.ok);
        await expect(stdout).toMatchFileSnapshot(`./__snapshots__/help-${['streamdiffusion', ...command].join('-')}.txt`);
      });
    }
  });

  it('img2img writes one output per image of files and folders, at the asked size, and reports them as JSON', async () => {
    const out = join(directory, 'img2img');
    const { code, stdout } = await cli('img2img', EXAMPLE, IMAGES, ...small, '--t-index-list', '20,40', '--prompt', 'a lighthouse', '--out', out, '--json');
    expect(code).toBe(EXIT_CODES.ok);
    const report = JSON.parse(stdout) as { ok: boolean; command: string; images: { input: string; output: string }[] };
    expect(report).toMatchObject({ ok: true, command: 'img2img' });
    // The file, then the folder's images sorted by name (example.png again, style.png).
    expect(report.images.map((image) => image.input)).toEqual([EXAMPLE, EXAMPLE, join(IMAGES, 'style.png')]);
    expect((await readdir(out)).sort()).toEqual(['example.png', 'style.png']);
    const image = await readImage(join(out, 'style.png'));
    expect([image.width, image.height]).toEqual([64, 64]);
  });

  it('img2img gives each still its own output: after another image, the same bytes as alone', async () => {
    const [both, alone] = [join(directory, 'both'), join(directory, 'alone')];
    const style = join(IMAGES, 'style.png');
    expect((await cli('img2img', EXAMPLE, style, ...small, '--t-index-list', '20,40', '--out', both)).code).toBe(EXIT_CODES.ok);
    expect((await cli('img2img', style, ...small, '--t-index-list', '20,40', '--out', alone)).code).toBe(EXIT_CODES.ok);
    const [a, b] = await Promise.all([readImage(join(both, 'style.png')), readImage(join(alone, 'style.png'))]);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
  });

  it('txt2img writes --count images into a folder, or one into a file', async () => {
    const out = join(directory, 'txt2img');
    expect((await cli('txt2img', ...small, '--count', '2', '--out', out)).code).toBe(EXIT_CODES.ok);
    expect((await readdir(out)).sort()).toEqual(['txt2img-1.png', 'txt2img-2.png']);
    const file = join(directory, 'one.png');
    const { code, stdout } = await cli('txt2img', ...small, '--out', file);
    expect(code).toBe(EXIT_CODES.ok);
    expect(stdout).toContain(`→ ${file}`);
    expect((await cli('txt2img', ...small, '--count', '2', '--out', file)).stderr).toMatch(/--out .*one file for 2 images/);
  });

  it('exits 2 for usage errors and 3 for invalid values, naming the flag', async () => {
    const unknown = await cli('img2img', EXAMPLE, ...small, '--strength', '0.5');
    expect(unknown.code).toBe(EXIT_CODES.usage);
    expect(unknown.stderr).toMatch(/unknown option '--strength'/);
    const kind = await cli('img2img', EXAMPLE, ...small, '--guidance-scale', 'lots');
    expect(kind).toMatchObject({ code: EXIT_CODES.usage, stderr: expect.stringMatching(/--guidance-scale: expected a number, got "lots"/) });
    const choice = await cli('img2img', EXAMPLE, ...small.slice(0, -2), '--cfg-type', 'sometimes');
    expect(choice.code).toBe(EXIT_CODES.usage);
    expect(choice.stderr).toMatch(/--cfg-type.*sometimes.*none, self, initialize, full/s);
    const range = await cli('img2img', EXAMPLE, ...small, '--t-index-list', '32,99', '--json');
    expect(range.code).toBe(EXIT_CODES.invalid);
    expect(JSON.parse(range.stdout)).toMatchObject({ ok: false, exitCode: 3, error: { message: expect.stringMatching(/^--t-index-list: .*99/) } });
    expect((await cli('img2img', join(directory, 'missing.png'), ...small)).code).toBe(EXIT_CODES.invalid);
    expect((await cli('img2img', EXAMPLE)).stderr).toMatch(/no model: give --model/);
    expect((await cli('paint')).code).toBe(EXIT_CODES.usage);
  });

  it('reads a config file and lets flags override it', async () => {
    const file = join(directory, 'show.yaml');
    await writeFile(file, [`model_id: ${MODEL}`, 'width: 64', 'height: 64', 't_index_list: [10, 30]', 'cfg_type: none', 'prompt: a lighthouse', 'engine_dir: engines'].join('\n'));
    const out = join(directory, 'config.png');
    const { code } = await cli('img2img', EXAMPLE, '--config', file, '--width', '128', '--height', '128', '--out', out);
    expect(code).toBe(EXIT_CODES.ok);
    const image = await readImage(out);
    expect([image.width, image.height]).toEqual([128, 128]);
  });

  it('merges a config’s LoRAs (loras, or the forks’ lora_dict) into the model before it runs, and names a missing file', async () => {
    const run = async (name: string, lines: readonly string[]): Promise<Uint8Array> => {
      const file = join(directory, `${name}.yaml`);
      await writeFile(file, [`model_id: ${MODEL}`, 'width: 64', 'height: 64', 't_index_list: [20]', 'cfg_type: none', 'prompt: a lighthouse', ...lines].join('\n'));
      const out = join(directory, `${name}.png`);
      const { code, stderr } = await cli('img2img', EXAMPLE, '--config', file, '--out', out);
      expect(code, stderr).toBe(EXIT_CODES.ok);
      return (await readImage(out)).data;
    };
    const plain = await run('no-lora', []);
    const listed = await run('loras', ['loras:', `  - path: ${fromRoot('fixtures/loras/kohya.safetensors')}`, '    scale: 2']);
    const dictionary = await run('lora-dict', ['lora_dict:', `  ${fromRoot('fixtures/loras/kohya.safetensors')}: 2`]);
    expect(dictionary).toEqual(listed);
    expect(listed.some((value, index) => Math.abs(value - plain[index]!) > 2)).toBe(true);
    const missing = join(directory, 'missing-lora.yaml');
    await writeFile(missing, [`model_id: ${MODEL}`, 'lora_dict:', '  nowhere.safetensors: 1'].join('\n'));
    const failed = await cli('img2img', EXAMPLE, '--config', missing, '--out', join(directory, 'x.png'));
    expect(failed.code).toBe(EXIT_CODES.invalid);
    expect(failed.stderr).toMatch(/missing-lora\.yaml:3: lora_dict\.nowhere\.safetensors/);
  });

  it('config validate prints warnings with their lines, and names file, line and key of an invalid config', async () => {
    const good = join(directory, 'good.yaml');
    await writeFile(good, [`model_id: ${MODEL}`, 'engine_dir: engines', 't_index_list: [10, 30]'].join('\n'));
    const valid = await cli('config', 'validate', good);
    expect(valid.code).toBe(EXIT_CODES.ok);
    expect(valid.stdout).toContain(`warning: ${good}:2: engine_dir:`);
    expect(valid.stdout).toContain(`${good}: valid (model ${MODEL}; 1 warning)`);
    const json = JSON.parse((await cli('config', 'validate', good, '--json')).stdout) as { warnings: { key: string; line: number }[] };
    expect(json.warnings).toEqual([expect.objectContaining({ key: 'engine_dir', line: 2 })]);

    const bad = join(directory, 'bad.yaml');
    await writeFile(bad, [`model_id: ${MODEL}`, 'guidance_scale: 1.2', 't_index_list: [10, 300]'].join('\n'));
    const invalid = await cli('config', 'validate', bad);
    expect(invalid.code).toBe(EXIT_CODES.invalid);
    expect(invalid.stderr).toMatch(new RegExp(`${bad.replaceAll('/', '\\/')}:3: t_index_list\\.1:`));
  });

  it('models list reads every folder of the models folder (no model loaded), marking the ones that are not model folders', async () => {
    const models = fromRoot('fixtures/models');
    const listed = JSON.parse((await cli('models', 'list', '--models-dir', models, '--json')).stdout) as { models: { name: string; valid: boolean; arch?: string; dtype?: string; ipAdapter?: string; controlNetInputs?: boolean }[] };
    expect(listed.models.map((model) => [model.name, model.valid, model.arch, model.dtype])).toEqual([
      ['micro-sd-turbo-controlnet', true, 'micro-sd-turbo', 'fp32'],
      ['micro-sd-turbo-ipadapter', true, 'micro-sd-turbo', 'fp32'],
      ['tiny-sd-turbo', true, 'tiny-sd-turbo', 'fp32'],
      ['tiny-sd15-fp16', true, 'tiny-sd15', 'fp16'],
    ]);
    expect(listed.models[0]).toMatchObject({ controlNetInputs: true });
    expect(listed.models[1]).toMatchObject({ ipAdapter: 'regular' });

    const own = join(directory, 'models');
    await mkdir(join(own, 'half-copied'), { recursive: true });
    const text = await cli('models', 'list', '--models-dir', own);
    expect(text.code).toBe(EXIT_CODES.ok);
    expect(text.stdout).toMatch(/half-copied {2}not a model folder: .*model_index\.json/);
    expect(text.stdout).toContain(`0 model folder(s) in ${own}`);
    expect((await cli('models', 'list', '--models-dir', join(directory, 'nowhere'))).code).toBe(EXIT_CODES.invalid);
  });

  it('models verify loads a folder (by path or by name) and reports what its UNet takes; a broken one exits 3', async () => {
    const verified = await cli('models', 'verify', 'micro-sd-turbo-ipadapter', '--models-dir', fromRoot('fixtures/models'), '--device', 'cpu', '--json');
    expect(verified.code).toBe(EXIT_CODES.ok);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, device: 'cpu', capabilities: { textEmbeddingWidth: 32, controlNet: null, ipAdapter: { scaleInput: 'ip_adapter_scale', layers: 16 } } });
    const broken = await cli('models', 'verify', join(directory, 'models', 'half-copied'), '--device', 'cpu');
    expect(broken.code).toBe(EXIT_CODES.invalid);
    expect(broken.stderr).toMatch(/model_index\.json/);
  });

  it('export runs the Python export tool with its arguments, and says what is missing when Python cannot run it', async () => {
    const fake = async (name: string, script: string): Promise<string> => {
      const path = join(directory, name);
      await writeFile(path, `#!/bin/sh\n${script}\n`);
      await chmod(path, 0o755);
      return path;
    };
    const noTorch = await fake('python-without-torch', `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`);
    const missing = await cli('export', '--python', noTorch, '--', 'convert', 'a', 'b');
    expect(missing.code).toBe(EXIT_CODES.invalid);
    expect(missing.stderr).toMatch(/the Python module "torch" is missing.*tools\/export\/README\.md/);
    const absent = await cli('export', '--python', join(directory, 'no-python'), '--', 'versions');
    expect(absent).toMatchObject({ code: EXIT_CODES.invalid, stderr: expect.stringMatching(/was not found.*give --python/) });

    // A Python that passes the check and echoes how the tool was started.
    const echo = await fake('python-echo', 'if [ "$1" = "-c" ]; then echo 2.11; exit 0; fi; echo "args: $*"; echo "PYTHONPATH: $PYTHONPATH"; [ "$5" = "fail" ] && exit 5; exit 0');
    const ran = await cli('export', '--python', echo, '--', 'convert', 'ckpt', 'out', '--dtype', 'fp16');
    expect(ran.code).toBe(EXIT_CODES.ok);
    expect(ran.stdout).toContain('args: -m streamdiffusion_export convert ckpt out --dtype fp16');
    expect(ran.stdout).toContain(`PYTHONPATH: ${fromRoot('tools/export')}`);
    const failed = await cli('export', '--python', echo, '--', 'convert', 'ckpt', 'fail');
    expect(failed).toMatchObject({ code: EXIT_CODES.failed, stderr: expect.stringMatching(/exited with code 5/) });
  });

  it('bench measures the pipeline the flags describe and prints its numbers (JSON for scripts)', async () => {
    const { code, stdout } = await cli('bench', ...small, '--t-index-list', '20,40', '--frames', '3', '--warmup', '1', '--json');
    expect(code).toBe(EXIT_CODES.ok);
    const result = JSON.parse(stdout) as { settings: { width: number; tIndexList: number[]; frames: number }; fps: number; models: Record<string, unknown>; stagesMs: Record<string, number> };
    expect(result.settings).toMatchObject({ width: 64, tIndexList: [20, 40], frames: 3 });
    expect(result.fps).toBeGreaterThan(0);
    expect(Object.keys(result.models)).toEqual(expect.arrayContaining(['unet', 'vae_encoder', 'vae_decoder']));
    expect((await cli('bench', ...small, '--frames', 'many')).code).toBe(EXIT_CODES.usage);
  });

  it('comfy install writes the node pack into a ComfyUI’s custom_nodes, with the sidecar and its packages; a folder without main.py exits 3', async () => {
    const comfyui = join(directory, 'ComfyUI');
    await mkdir(comfyui, { recursive: true });
    await writeFile(join(comfyui, 'main.py'), '');
    const { code, stdout, stderr } = await cli('comfy', 'install', comfyui, '--link-modules', '--json');
    expect(code, stderr).toBe(EXIT_CODES.ok);
    const result = JSON.parse(stdout) as { dir: string; files: string[]; schemaHash: string };
    expect(result.dir).toBe(join(comfyui, 'custom_nodes', 'streamdiffusion_nodes'));
    expect(result.files).toEqual(expect.arrayContaining(['__init__.py', 'nodes.py', 'streamdiffusion_runtime.py', 'pyproject.toml', 'sidecar/sidecar.mjs']));
    for (const name of ['onnxruntime-node', 'sharp']) expect((await readdir(join(result.dir, 'sidecar', 'node_modules'))).includes(name), name).toBe(true);
    const notComfy = await cli('comfy', 'install', join(directory, 'nowhere'), '--link-modules');
    expect(notComfy.code).toBe(EXIT_CODES.invalid);
    expect(notComfy.stderr).toContain('not a ComfyUI folder (no main.py)');
  });

  it('checks integer and number flags before anything loads, naming the flag (exit code 2)', async () => {
    const cases: [string[], string][] = [
      [['serve', ...small, '--port', '70000'], '--port: expected an integer 0–65535, got "70000"'],
      [['txt2img', ...small, '--count', '0'], '--count: expected an integer ≥ 1, got "0"'],
      [['stream', EXAMPLE, '--out', join(directory, 'never.mp4'), ...small, '--max-frames', '2.5'], '--max-frames: expected an integer ≥ 1, got "2.5"'],
      [['stream', EXAMPLE, '--out', join(directory, 'never.mp4'), ...small, '--fps', 'fast'], '--fps: expected a positive number, got "fast"'],
    ];
    for (const [argv, message] of cases) {
      const { code, stderr } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(EXIT_CODES.usage);
      expect(stderr).toContain(message);
    }
  });
});
