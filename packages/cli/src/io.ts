/** Where the command writes, its exit codes, and the error that carries one. */
import type { Command } from 'commander';

/** The streams a command writes to (process.stdout/stderr in the binary; buffers in tests). */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Width to wrap help at (default: commander's, the terminal's width or 80). */
  readonly columns?: number;
}

/** Exit codes, for scripts: stable across versions. */
export const EXIT_CODES = Object.freeze({
  /** Done. */
  ok: 0,
  /** Something failed while running (a model run, a file write). */
  failed: 1,
  /** The command line is wrong: unknown command or flag, a flag value of the wrong kind. */
  usage: 2,
  /** The input is wrong: a parameter out of range, a bad config file, model folder or image. */
  invalid: 3,
  /** A service is out of reach: the Hugging Face hub (offline?), or a transfer broke off (run again to resume). */
  unavailable: 4,
});

/** An error the command reports with its own exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Whether `--json` was given (it belongs to the root command, so it may come before or after the command). */
export const wantsJson = (command: Command): boolean => command.optsWithGlobals<{ json?: boolean }>().json === true;

/** Writes a command's result: one JSON document with `--json`, else the text lines. */
export function report(io: Io, command: Command, result: Record<string, unknown>, lines: readonly string[]): void {
  if (wantsJson(command)) io.stdout(`${JSON.stringify({ ok: true, ...result }, null, 2)}\n`);
  else for (const line of lines) io.stdout(`${line}\n`);
}

/** An integer flag's value in [min, max], or a usage error naming the flag and what it got. */
export function integerFlag(flag: string, text: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `${min}–${max}`;
    throw new CliError(`--${flag}: expected an integer ${range}, got ${JSON.stringify(text)}`, EXIT_CODES.usage);
  }
  return value;
}
