/**
 * The generated pack against golden files (a change to a schema or to the generator shows up as a
 * reviewed diff: update with `npx vitest run --project comfy-nodes -u`), compiled by Python, with
 * the runtime module copied verbatim and the schema hash the sidecar will announce.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schemaHash } from '../catalogue/schema-hash.js';
import { generatePack } from './generate-pack.js';

const run = promisify(execFile);

describe('the generated node pack', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sd-comfy-pack-'));
    await generatePack(dir, { bundleSidecar: false });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const file of ['__init__.py', 'nodes.py', 'pyproject.toml', 'object_info.json']) {
    it(`matches the golden ${file}`, async () => {
      await expect(await readFile(join(dir, file), 'utf8')).toMatchFileSnapshot(`../__goldens__/${file}.golden`);
    });
  }

  it('copies the hand-written runtime module verbatim and writes nothing else without the sidecar', async () => {
    expect(await readFile(join(dir, 'streamdiffusion_runtime.py'), 'utf8')).toBe(await readFile(new URL('../../python/streamdiffusion_runtime.py', import.meta.url), 'utf8'));
    expect((await readdir(dir)).sort()).toEqual(['__init__.py', 'example_workflows', 'nodes.py', 'object_info.json', 'pyproject.toml', 'streamdiffusion_runtime.py']);
  });

  it('ships the example workflows in the editor format as templates (example_workflows/), the same as the repo copies', async () => {
    const templates = (await readdir(join(dir, 'example_workflows'))).sort();
    expect(templates).toEqual(['controlnet-ipadapter.json', 'img2img.json']);
    for (const file of templates) expect(await readFile(join(dir, 'example_workflows', file), 'utf8'), file).toBe(await readFile(new URL(`../../workflows/${file}`, import.meta.url), 'utf8'));
  });

  it('compiles with python3 -m py_compile', async () => {
    const files = ['__init__.py', 'nodes.py', 'streamdiffusion_runtime.py'].map((file) => join(dir, file));
    const { stderr } = await run('python3', ['-m', 'py_compile', ...files]);
    expect(stderr).toBe('');
  });

  it('carries the schema hash the sidecar announces, and registry metadata in [tool.comfy]', async () => {
    const nodes = await readFile(join(dir, 'nodes.py'), 'utf8');
    expect(nodes).toContain(`SCHEMA_HASH = "${schemaHash()}"`);
    const pyproject = await readFile(join(dir, 'pyproject.toml'), 'utf8');
    expect(pyproject).toMatch(/\[tool\.comfy\]\nPublisherId = "[^"]+"\nDisplayName = "[^"]+"/);
    expect(await readFile(join(dir, '__init__.py'), 'utf8')).toContain('async def comfy_entrypoint()');
  });
});
