/** Running the tools engines are made with (trtexec, the refit script): their output line by line, and its last lines. */
import { spawn } from 'node:child_process';

type Stream = 'stdout' | 'stderr';

/**
 * Runs a program, handing each output line to `onLine` (a last line without a newline too);
 * resolves with its exit and the last lines (all, and stderr's). Rejects when it cannot be started.
 */
export function runLines(program: string, args: readonly string[], onLine: (line: string, stream: Stream) => void, tailLines = 40): Promise<{ code: number | null; signal: NodeJS.Signals | null; tail: string; stderrTail: string }> {
  return new Promise((done, fail) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const stderrTail: string[] = [];
    const pending: Record<Stream, string> = { stdout: '', stderr: '' };
    const keep = (line: string, stream: Stream): void => {
      for (const lines of stream === 'stderr' ? [tail, stderrTail] : [tail]) {
        lines.push(line);
        if (lines.length > tailLines) lines.shift();
      }
      onLine(line, stream);
    };
    const reader = (stream: Stream) => (chunk: Buffer) => {
      const lines = (pending[stream] + chunk.toString()).split(/\r?\n/);
      pending[stream] = lines.pop() ?? '';
      for (const line of lines) keep(line, stream);
    };
    child.stdout.on('data', reader('stdout'));
    child.stderr.on('data', reader('stderr'));
    child.on('error', fail);
    child.on('close', (code, signal) => {
      for (const stream of ['stdout', 'stderr'] as const) if (pending[stream] !== '') keep(pending[stream], stream);
      done({ code, signal, tail: tail.join('\n'), stderrTail: stderrTail.join('\n') });
    });
  });
}
