#!/usr/bin/env node
// The `streamdiffusion` binary: runs the command line and exits with its code.
import { run } from './program.js';

// Through the repository's `pnpm streamdiffusion …` script pnpm runs us in packages/cli; paths the
// user typed are relative to where they typed them.
if (process.env.npm_lifecycle_event === 'cli' && process.env.INIT_CWD !== undefined) process.chdir(process.env.INIT_CWD);

process.exitCode = await run(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
