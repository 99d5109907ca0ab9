/**
 * `export`: runs the Python export tool (tools/export) to make a model folder from a diffusers
 * checkpoint, when a Python with torch and diffusers is here; a clear error otherwise. Everything
 * after `--` goes to the tool (`streamdiffusion export -- convert <checkpoint> <out> --dtype fp16`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { CliError, EXIT_CODES, type Io } from '../io.js';

/** tools/export of this repository, if the CLI runs from it. */
function exportToolFolder(): string | undefined {
  const candidates = [process.env.STREAMDIFFUSION_EXPORT_TOOL, fileURLToPath(new URL('../../../../tools/export', import.meta.url)), fileURLToPath(new URL('../../../tools/export', import.meta.url))];
  return candidates.find((path): path is string => path !== undefined && existsSync(join(path, 'streamdiffusion_export', '__main__.py')));
}

/** Runs a process and resolves with its exit code and output. */
function exec(command: string, args: readonly string[], env: NodeJS.ProcessEnv, io?: Io): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    const child = spawn(command, args, { env, stdio: io === undefined ? ['ignore', 'pipe', 'pipe'] : ['inherit', 'pipe', 'pipe'] });
    let output = '';
    const take = (write?: (text: string) => void) => (chunk: Buffer) => {
      const text = chunk.toString();
      output += text;
      write?.(text);
    };
    child.stdout.on('data', take(io === undefined ? undefined : (text) => io.stdout(text)));
    child.stderr.on('data', take(io === undefined ? undefined : (text) => io.stderr(text)));
    child.on('error', (error) => done({ code: -1, output: error.message }));
    child.on('close', (code) => done({ code: code ?? 1, output }));
  });
}

export function exportCommand(io: Io): Command {
  return new Command('export')
    .description('Make a model folder with the Python export tool (needs python with torch and diffusers; see tools/export/README.md).')
    .argument('[tool arguments...]', 'the export tool’s command and options, after --')
    .option('--python <command>', 'the Python to run', process.env.STREAMDIFFUSION_PYTHON ?? 'python3')
    .allowUnknownOption()
    .action(async (args: string[], options: { python: string }) => {
      const tool = exportToolFolder();
      if (tool === undefined) throw new CliError('the export tool (tools/export) is not here: run from a clone of the repository, or set STREAMDIFFUSION_EXPORT_TOOL to its folder', EXIT_CODES.invalid);
      const vendored = resolve(tool, '..', '..', '.vendor', 'diffusers', 'src');
      const env = { ...process.env, PYTHONPATH: [tool, ...(existsSync(vendored) ? [vendored] : []), process.env.PYTHONPATH].filter(Boolean).join(delimiter) };
      // What must be installed; diffusers may be source beside the tool, which the tool finds itself.
      const probe = await exec(options.python, ['-c', 'import torch, transformers, onnx, numpy; print(torch.__version__)'], env);
      if (probe.code !== 0) {
        const missing = /No module named '([^']+)'/.exec(probe.output)?.[1];
        throw new CliError(
          probe.code === -1
            ? `${options.python} was not found: the export tool needs Python ≥ 3.10 with torch, diffusers, transformers and onnx (give --python)`
            : `${options.python} cannot run the export tool: ${missing === undefined ? probe.output.trim().split('\n').at(-1) : `the Python module "${missing}" is missing`}. It needs torch, transformers, onnx and numpy, and diffusers installed or as source at .vendor/diffusers/src; see tools/export/README.md`,
          EXIT_CODES.invalid,
        );
      }
      const result = await exec(options.python, ['-m', 'streamdiffusion_export', ...args], env, io);
      if (result.code !== 0) throw new CliError(`the export tool exited with code ${result.code}`, EXIT_CODES.failed);
    });
}
