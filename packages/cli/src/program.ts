/**
 * The `streamdiffusion` command: commands, their flags (generated from the parameter schemas), what
 * they print (text, or one JSON document with `--json`) and their exit codes.
 */
import { Command, CommanderError } from 'commander';
import { StreamDiffusionError } from '@streamdiffusion/core';
import { benchCommand } from './commands/bench.js';
import { buildEnginesCommand } from './commands/build-engines.js';
import { comfyCommand } from './commands/comfy.js';
import { configCommand } from './commands/config-validate.js';
import { enginesCommand } from './commands/engines.js';
import { exportCommand } from './commands/export.js';
import { img2imgCommand, txt2imgCommand } from './commands/generate.js';
import { modelsCommand } from './commands/models.js';
import { serveCommand } from './commands/serve.js';
import { streamCommand } from './commands/stream.js';
import { FlagValueError } from './flags.js';
import { CliError, EXIT_CODES, type Io } from './io.js';

/** The command tree, writing to `io`; help is wrapped at `io.columns` (the terminal's width in the binary). */
export function createProgram(io: Io): Command {
  const output = {
    writeOut: (text: string) => io.stdout(text),
    writeErr: (text: string) => io.stderr(text),
    ...(io.columns === undefined ? {} : { getOutHelpWidth: () => io.columns!, getErrHelpWidth: () => io.columns! }),
  };
  const program = new Command('streamdiffusion')
    .description('StreamDiffusion in Node.js: real-time img2img and txt2img on ONNX model folders.')
    .option('--json', 'print one JSON document (for scripts) instead of text')
    .showHelpAfterError('(add --help for usage)')
    .addCommand(img2imgCommand(io))
    .addCommand(txt2imgCommand(io))
    .addCommand(streamCommand(io))
    .addCommand(configCommand(io))
    .addCommand(modelsCommand(io))
    .addCommand(exportCommand(io))
    .addCommand(benchCommand(io))
    .addCommand(serveCommand(io))
    .addCommand(comfyCommand(io))
    .addCommand(buildEnginesCommand(io))
    .addCommand(enginesCommand(io));
  // Every command reports through io and throws instead of exiting, so run() decides the exit code.
  const all = (command: Command): Command[] => [command, ...command.commands.flatMap(all)];
  for (const command of all(program)) command.exitOverride().configureOutput(output);
  return program;
}

/**
 * Runs the command line `argv` (without node and the script) and returns the exit code: 0 done,
 * 1 failed while running, 2 bad usage (unknown command or flag, a flag value of the wrong kind),
 * 3 invalid input (a parameter, config file, model folder or image that is not right), 4 a service
 * out of reach (the Hugging Face hub, offline, or a download that broke off: run again to resume).
 */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  const program = createProgram(io);
  const json = argv.includes('--json');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_CODES.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with code 0; usage errors were printed by commander.
      return error.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage;
    }
    const code = error instanceof FlagValueError ? EXIT_CODES.usage : error instanceof CliError ? error.exitCode : error instanceof StreamDiffusionError ? EXIT_CODES.invalid : EXIT_CODES.failed;
    const message = error instanceof Error ? error.message : String(error);
    if (json) io.stdout(`${JSON.stringify({ ok: false, exitCode: code, error: { name: error instanceof Error ? error.name : 'Error', message } }, null, 2)}\n`);
    else io.stderr(`streamdiffusion: ${message}\n`);
    return code;
  }
}
