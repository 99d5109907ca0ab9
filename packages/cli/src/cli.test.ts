import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readImage } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from './io.js';
import { run } from './program.js';

const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const MODEL = fromRoot('fixtures/models/tiny-sd-turbo');
const EXAMPLE = fromRoot('fixtures/images/example.png');
const IMAGES = fromRoot('fixtures/images');

/** Runs the command line and keeps what it printed. */
async function cli(...argv: string[]): Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), columns: 100 });
  return { code, stdout, stderr };
}

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
    for (const command of [[], ['img2img'], ['txt2img'], ['config', 'validate']]) {
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
});
