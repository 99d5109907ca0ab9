import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

describe('the package README', () => {
  it('shows examples/lora-quick-start.ts as its LoRA example, which runs from the repository root', async () => {
    const readme = await readFile(fromRoot('packages/tensorrt/README.md'), 'utf8');
    const example = await readFile(fromRoot('packages/tensorrt/examples/lora-quick-start.ts'), 'utf8');
    const block = /## LoRA[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBe(example);
    const { stdout } = await promisify(execFile)(fromRoot('node_modules/.bin/tsx'), ['--conditions=@streamdiffusion/source', 'packages/tensorrt/examples/lora-quick-start.ts'], { cwd: fromRoot('.') });
    expect(stdout).toMatch(/^removed: reloaded unet, text_encoder in \d+ ms$/m);
  }, 60_000);
});
