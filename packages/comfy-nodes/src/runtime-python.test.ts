/**
 * The pack's Python runtime module with the real, bundled sidecar: a pack is generated (sidecar
 * bundled by esbuild, its native packages linked from this installation) and
 * python/tests/test_runtime.py runs against it with python3 — framing, input decoding, loading the
 * tiny model, a batch of frames, updates validated by the sidecar, the schema-hash handshake, a
 * sidecar crash and the restart after it, and the exit when stdin closes. No torch or ComfyUI is needed.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePack } from './generator/generate-pack.js';
import { linkSidecarModules } from './generator/install-pack.js';

const TESTS = fileURLToPath(new URL('../python/tests/test_runtime.py', import.meta.url));
const MODEL = fileURLToPath(new URL('../../../fixtures/models/tiny-sd-turbo', import.meta.url));

describe('the pack’s Python runtime with the bundled sidecar (python3 unittest)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sd-comfy-runtime-'));
    await generatePack(dir);
    await linkSidecarModules(dir);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes every runtime test, none skipped', async () => {
    const { code, output } = await new Promise<{ code: number; output: string }>((done) => {
      execFile(
        'python3',
        ['-m', 'unittest', '-v', TESTS],
        { env: { ...process.env, STREAMDIFFUSION_TEST_PACK: dir, STREAMDIFFUSION_TEST_MODEL: MODEL, STREAMDIFFUSION_NODE: process.execPath }, timeout: 110_000 },
        (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, output: `${stdout}${stderr}` }),
      );
    });
    expect(code, output).toBe(0);
    const ran = /Ran (\d+) tests?/.exec(output);
    expect(Number(ran?.[1]), output).toBe(16);
    expect(output).not.toMatch(/skipped/);
    expect(output).toMatch(/\nOK\n?$/);
  });
});
