import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { replaceParametersTable } from '../../test-support/readme.js';
import { parametersMarkdownTable } from './parameters-table.js';
import { streamParametersShape } from './stream-parameters.js';

describe('the parameters table', () => {
  it('has one row per schema field with its default and update kind', () => {
    const table = parametersMarkdownTable();
    for (const key of Object.keys(streamParametersShape)) expect(table).toContain(`| \`${key}\` |`);
    expect(table).toContain('| `guidance_scale` | `1.2` | hot |');
    expect(table).toContain('| `cfg_type` | `"self"` | reload |');
  });

  it('is the one in the README (regenerate with `pnpm --filter @streamdiffusion/core parameters-table`)', async () => {
    const readme = await readFile(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    expect(replaceParametersTable(readme, parametersMarkdownTable())).toBe(readme);
  });
});
