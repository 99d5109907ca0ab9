import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fromRoot } from '../test-support/run-cli.js';
import { EXIT_CODES } from './io.js';

const MODEL = fromRoot('fixtures/models/micro-sd-turbo-controlnet');
const CANNY = fromRoot('fixtures/controlnets/micro-canny');

describe('build-engines and engines (no TensorRT here: dry runs, the missing-trtexec error, the store)', () => {
  let directory: string;
  let config: string;
  /** PATH without any trtexec: only node's own folder. */
  let savedPath: string | undefined;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sd-cli-engines-'));
    config = join(directory, 'show.yaml');
    await writeFile(config, [`model_id: ${MODEL}`, 'width: 512', 'height: 512', 't_index_list: [20, 40]', 'cfg_type: full', 'guidance_scale: 1.5', 'controlnets:', `  - model_id: ${CANNY}`, '    conditioning_scale: 0.5'].join('\n'));
    savedPath = process.env.PATH;
    process.env.PATH = join(directory, 'empty-bin');
  });
  afterAll(async () => {
    process.env.PATH = savedPath;
    await rm(directory, { recursive: true, force: true });
  });

  it('build-engines --dry-run prints the plan (the config’s ControlNet included) and the trtexec commands', async () => {
    const store = join(directory, 'store');
    const { code, stdout } = await cli('build-engines', '--config', config, '--store', store, '--static', '--max-batch', '8', '--dry-run', '--json');
    expect(code).toBe(EXIT_CODES.ok);
    const report = JSON.parse(stdout) as { trtexec: null; options: { resolution: string }; engines: { name: string; batch: { max: number }; command: string[] }[] };
    expect(report.trtexec).toBeNull();
    expect(report.options.resolution).toBe('static');
    expect(report.engines.map((engine) => engine.name)).toEqual(['unet', 'vae_encoder', 'vae_decoder', 'controlnet-0']);
    const unet = report.engines[0]!;
    // cfg full with guidance: 2·n·f rows, the --max-batch override on top.
    expect(unet.batch.max).toBe(8);
    expect(unet.command).toContain('--fp16');
    expect(unet.command.find((arg) => arg.startsWith('--optShapes='))).toMatch(/^--optShapes=sample:4x4x64x64,/);
    expect(unet.command.find((arg) => arg.startsWith('--saveEngine='))).toBe(`--saveEngine=${store}/.tmp-<key>/engine.plan`);
    expect(report.engines[3]!.command.find((arg) => arg.startsWith('--maxShapes='))).toContain('controlnet_cond:8x3x512x512');
    const text = await cli('build-engines', '--config', config, '--store', store, '--dry-run');
    expect(text.stdout).toContain('trtexec: not found');
    expect(text.stdout).toMatch(/^ {2}trtexec --onnx=.*unet\/model\.onnx /m);
  });

  it('build-engines --refit --dry-run with the config’s LoRAs ends the UNet with its refit command; a missing LoRA file names its line', async () => {
    const withLoras = join(directory, 'loras.yaml');
    await writeFile(withLoras, [`model_id: ${fromRoot('fixtures/models/tiny-sd-turbo')}`, 'width: 64', 'height: 64', 'loras:', `  - path: ${fromRoot('fixtures/loras/kohya.safetensors')}`, '    scale: 0.5'].join('\n'));
    const { code, stdout } = await cli('build-engines', '--config', withLoras, '--store', join(directory, 'store'), '--static', '--refit', '--dry-run', '--json');
    expect(code).toBe(EXIT_CODES.ok);
    const report = JSON.parse(stdout) as { loras: { count: number; refit: boolean }; engines: { name: string; refitCommand?: string[] }[] };
    expect(report.loras).toEqual({ count: 1, refit: true });
    expect(report.engines.filter((engine) => engine.refitCommand !== undefined).map((engine) => engine.name)).toEqual(['unet']);
    const plain = await cli('build-engines', '--config', withLoras, '--store', join(directory, 'store'), '--static', '--dry-run');
    expect(plain.stdout).toContain('note: the engines hold the model’s own weights; the 1 LoRA(s) are not in them');
    await writeFile(withLoras, [`model_id: ${fromRoot('fixtures/models/tiny-sd-turbo')}`, 'loras:', '  - path: missing.safetensors'].join('\n'));
    const missing = await cli('build-engines', '--config', withLoras, '--dry-run');
    expect(missing.code).toBe(EXIT_CODES.invalid);
    expect(missing.stderr).toMatch(/loras\.0\.path.*missing\.safetensors/);
  });

  it('build-engines without trtexec exits 4 pointing to the TensorRT install guide; bad plan flags exit 2 or 3 naming the flag', async () => {
    const missing = await cli('build-engines', '--config', config, '--store', join(directory, 'store'));
    expect(missing.code).toBe(EXIT_CODES.unavailable);
    expect(missing.stderr).toContain('https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html');
    const configured = await cli('build-engines', '--config', config, '--trtexec', join(directory, 'no-trtexec'));
    expect(configured).toMatchObject({ code: EXIT_CODES.unavailable, stderr: expect.stringContaining(`${join(directory, 'no-trtexec')} is not an executable file`) });
    const range = await cli('build-engines', '--config', config, '--max-resolution', '1000', '--dry-run');
    expect(range.code).toBe(EXIT_CODES.invalid);
    expect(range.stderr).toMatch(/--max-resolution: expected .*multiple of 64.*got 1000/);
    const outside = await cli('build-engines', '--config', config, '--max-resolution', '448', '--min-resolution', '256', '--dry-run');
    expect(outside).toMatchObject({ code: EXIT_CODES.invalid, stderr: expect.stringMatching(/width: expected 256–448/) });
    expect((await cli('build-engines', '--config', config, '--precision', 'int8')).code).toBe(EXIT_CODES.usage);
    expect((await cli('build-engines', '--config', config, '--dynamic', '--static', '--dry-run')).code).toBe(EXIT_CODES.usage);
  });

  it('engines list shows what the store holds with stale marks; prune removes what it is asked to', async () => {
    const store = join(directory, 'listed');
    const onnx = join(directory, 'model.onnx');
    await writeFile(onnx, 'onnx bytes');
    const key = (digit: string) => digit.repeat(32);
    const meta = (digit: string, onnxPath: string, createdAt: string) => ({ formatVersion: 1, key: key(digit), name: 'unet', kind: 'unet', onnx: { path: onnxPath, bytes: 10, mtimeMs: 0 }, onnxSha256: '0'.repeat(64), loraHash: null, precision: 'fp16', inputs: [], computeCapability: '9.0', tensorrtVersion: '10.3.0', createdAt, engineBytes: 6 });
    for (const [digit, path, createdAt] of [['a', onnx, new Date().toISOString()], ['b', join(directory, 'gone.onnx'), '2020-01-01T00:00:00.000Z']] as const) {
      await mkdir(join(store, key(digit)), { recursive: true });
      await writeFile(join(store, key(digit), 'engine.plan'), 'engine');
      await writeFile(join(store, key(digit), 'meta.json'), JSON.stringify(meta(digit, path, createdAt)));
    }
    const listed = JSON.parse((await cli('engines', 'list', '--store', store, '--json')).stdout) as { engines: { key: string; stale: { reason: string }[] }[] };
    expect(listed.engines.map((engine) => [engine.key, engine.stale.map((stale) => stale.reason)])).toEqual([
      [key('a'), ['onnx-changed']],
      [key('b'), ['onnx-missing']],
    ]);
    expect((await cli('engines', 'list', '--store', store)).stdout).toMatch(new RegExp(`^${key('b')} {2}unet .*stale: .*gone\\.onnx is gone`, 'm'));
    expect((await cli('engines', 'prune', '--store', store)).code).toBe(EXIT_CODES.usage);
    expect((await cli('engines', 'prune', '--store', store, '--older-than', 'soon')).code).toBe(EXIT_CODES.usage);
    const old = JSON.parse((await cli('engines', 'prune', '--store', store, '--older-than', '30', '--json')).stdout) as { removed: { key: string }[] };
    expect(old.removed.map((engine) => engine.key)).toEqual([key('b')]);
    const all = JSON.parse((await cli('engines', 'prune', '--store', store, '--all', '--json')).stdout) as { removed: { key: string }[] };
    expect(all.removed.map((engine) => engine.key)).toEqual([key('a')]);
  });
});
