import { execFile } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fromRoot } from '../test-support/fixtures.js';

describe('the package README', () => {
  it('shows examples/quick-start.ts as its quick start, which runs from the repository root', async () => {
    const readme = await readFile(fromRoot('packages/ip-adapter/README.md'), 'utf8');
    const example = await readFile(fromRoot('packages/ip-adapter/examples/quick-start.ts'), 'utf8');
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBe(example);

    const output = fromRoot('ip-adapter-out.png');
    try {
      await promisify(execFile)(fromRoot('node_modules/.bin/tsx'), ['--conditions=@streamdiffusion/source', 'packages/ip-adapter/examples/quick-start.ts'], { cwd: fromRoot('.') });
      expect((await stat(output)).size).toBeGreaterThan(100);
    } finally {
      await rm(output, { force: true });
    }
  }, 60_000);
});
