/**
 * Rewrites the parameters table in packages/core/README.md from the parameter schema:
 *   pnpm --filter @streamdiffusion/core parameters-table
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parametersMarkdownTable } from '../src/config/parameters-table.js';
import { replaceParametersTable } from '../test-support/readme.js';

const readme = fileURLToPath(new URL('../README.md', import.meta.url));
await writeFile(readme, replaceParametersTable(await readFile(readme, 'utf8'), parametersMarkdownTable()));
console.log(`updated the parameters table in ${readme}`);
