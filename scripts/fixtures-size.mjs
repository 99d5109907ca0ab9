#!/usr/bin/env node
// Fails when the committed fixtures together pass 10 MB (the budget for tiny test models).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const LIMIT = 10 * 1024 * 1024;
const roots = ['fixtures', 'packages/core/test-fixtures', 'packages/controlnet/test-fixtures'];
let total = 0;
const walk = (folder) => {
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) walk(path);
    else total += statSync(path).size;
  }
};
for (const root of roots) {
  try {
    walk(root);
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
  }
}
console.log(`fixtures: ${(total / 1024 / 1024).toFixed(2)} MB of ${LIMIT / 1024 / 1024} MB`);
process.exit(total <= LIMIT ? 0 : 1);
