#!/usr/bin/env node
// Runs every package's tests with vitest and ends with one line CI reads: `tests: N passed, M failed`.
// Extra arguments go to vitest (e.g. `pnpm test --project core`).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const folder = mkdtempSync(join(tmpdir(), 'streamdiffusion-tests-'));
const report = join(folder, 'report.json');
// Run vitest's own entry with this Node, so the script works with or without node_modules/.bin on PATH.
const vitestEntry = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
const vitest = spawnSync(
  process.execPath,
  [vitestEntry, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
);
let passed = 0;
let failed = 0;
try {
  const results = JSON.parse(readFileSync(report, 'utf8'));
  passed = results.numPassedTests;
  failed = results.numFailedTests;
  // A file that fails to load has no tests in it but must still count as a failure.
  for (const file of results.testResults ?? []) {
    if (file.status === 'failed' && (file.assertionResults ?? []).length === 0) failed += 1;
  }
} catch {
  failed = Math.max(failed, 1);
}
rmSync(folder, { recursive: true, force: true });
if (vitest.status !== 0 && failed === 0) failed = 1;
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && vitest.status === 0 ? 0 : 1);
