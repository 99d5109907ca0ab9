#!/usr/bin/env node
// Fails when the fixtures together pass their budget: 10 MB, decimal (10,000,000 bytes).
//
// What it counts: every file under fixtures/, packages/core/test-fixtures/ and
// packages/controlnet/test-fixtures/ that git tracks or would add (untracked but not ignored), at its
// size in the working tree: what a commit of those folders holds, READMEs and generator scripts
// included. Outside a git checkout it counts every file under the folders.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LIMIT = 10_000_000;
const ROOTS = ['fixtures', 'packages/core/test-fixtures', 'packages/controlnet/test-fixtures'];

process.chdir(fileURLToPath(new URL('..', import.meta.url)));

/** The files git tracks or would add under the roots; undefined outside a git checkout. */
function gitFiles() {
  try {
    const listing = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', ...ROOTS], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return { files: listing.split('\0').filter(Boolean), what: 'tracked or untracked-not-ignored files' };
  } catch {
    return undefined;
  }
}

/** Every file under the roots (no git). */
function allFiles() {
  const files = [];
  const walk = (folder) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.push(path);
    }
  };
  for (const root of ROOTS) {
    try {
      walk(root);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
  }
  return { files, what: 'files (not a git checkout: every file)' };
}

const { files, what } = gitFiles() ?? allFiles();
let total = 0;
let counted = 0;
for (const file of files) {
  try {
    total += statSync(file).size;
    counted += 1;
  } catch (error) {
    // Tracked but deleted in the working tree: a commit would not hold it.
    if (error.code !== 'ENOENT') throw error;
  }
}
const format = (bytes) => bytes.toLocaleString('en-US');
const left = LIMIT - total;
console.log(
  `fixtures: ${format(total)} bytes (${(total / 1e6).toFixed(3)} MB) of ${format(LIMIT)} (10 MB); ` +
    `${left >= 0 ? `${format(left)} bytes left` : `${format(-left)} bytes over`}; ${counted} ${what} under ${ROOTS.join(', ')}`,
);
process.exit(total <= LIMIT ? 0 : 1);
