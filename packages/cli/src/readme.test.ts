/**
 * The root README's section on the command shows one example per command: every example without a
 * `<placeholder>` runs here as written (outputs redirected from `out/` to a temporary folder) and
 * must succeed, so the README cannot drift from the command.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fromRoot } from '../test-support/run-cli.js';
import { EXIT_CODES } from './io.js';

/** Shell words of a command line: spaces split, double quotes group. */
const words = (line: string): string[] => [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((match) => match[1] ?? match[2]!);

const readme = await readFile(fromRoot('README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## The `streamdiffusion` command'), readme.indexOf('## Using the library'));
const examples = [...section.matchAll(/^npx pnpm@10\.34\.8 streamdiffusion (.+?)(?:\s+#.*)?$/gm)].map((match) => match[1]!.trim());

describe('the README’s command examples', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'sd-readme-'));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('show every command', () => {
    const commands = new Set(examples.map((example) => words(example).slice(0, 2).join(' ').replace(/ (-|<|fixtures).*$/, '')));
    expect([...commands].sort()).toEqual(['bench', 'build-engines', 'comfy install', 'config validate', 'engines list', 'engines prune', 'export', 'img2img', 'models list', 'models pull', 'models verify', 'serve', 'stream', 'txt2img']);
  });

  for (const example of examples.filter((line) => !line.includes('<') && !line.startsWith('serve'))) {
    it(`runs: streamdiffusion ${example}`, async () => {
      // Paths in the README are from the repository root; vitest runs there too.
      const argv = words(example).map((word) => (word.startsWith('out/') ? join(out, word.slice(4)) : word));
      const { code, stdout, stderr } = await cli(...argv, '--json');
      expect(code, stderr).toBe(EXIT_CODES.ok);
      expect(JSON.parse(stdout)).toMatchObject({ ok: true });
    });
  }

  it('wrote the images the img2img and txt2img examples name', async () => {
    expect((await readdir(out)).sort()).toEqual(['example.png', 'style.png', 'txt2img-1.png', 'txt2img-2.png']);
  });
});
