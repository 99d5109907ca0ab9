/** The command line run in-process for tests, with what it printed kept. */
import { fileURLToPath } from 'node:url';
import { run } from '../src/program.js';

/** A path from the repository root. */
export const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

/** Runs `streamdiffusion <argv>` and returns its exit code and output (help wrapped at 100 columns). */
export async function cli(...argv: string[]): Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), columns: 100 });
  return { code, stdout, stderr };
}
