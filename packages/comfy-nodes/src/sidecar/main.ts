/**
 * The sidecar process. Started by the pack's runtime module with pipes: requests on stdin, answers
 * on stdout (protocol.ts), log lines on stderr; it exits when stdin closes, so it never outlives
 * ComfyUI. `--listen <port>` serves the same protocol on 127.0.0.1:<port> instead, for a runtime
 * that attaches to a running sidecar (STREAMDIFFUSION_SIDECAR=tcp://127.0.0.1:<port>).
 */
import { createServer, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { decodeMessages, encodeMessage } from './protocol.js';
import { createSidecarService, type SidecarService } from './service.js';

const log = (line: string): void => void process.stderr.write(`[streamdiffusion sidecar] ${line}\n`);

/** Answers the requests of one connection in order until it closes. */
async function serve(service: SidecarService, input: Readable, output: Writable): Promise<void> {
  for await (const { json, binary } of decodeMessages(input as AsyncIterable<Buffer>)) {
    const id = json.id;
    try {
      const { result, binary: out } = await service.handle(String(json.method), json.params, binary);
      output.write(encodeMessage({ id, ok: true, result }, out));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`${String(json.method)} failed: ${message}`);
      output.write(encodeMessage({ id, ok: false, error: { name: error instanceof Error ? error.name : 'Error', message } }));
    }
  }
}

const service = createSidecarService({ log });
const listen = process.argv.indexOf('--listen');
if (listen >= 0) {
  const port = Number(process.argv[listen + 1]);
  const server = createServer((socket: Socket) => {
    serve(service, socket, socket).catch((error: unknown) => log(`connection: ${(error as Error).message}`));
  });
  server.listen(port, '127.0.0.1', () => log(`listening on tcp://127.0.0.1:${port}`));
  process.once('SIGINT', () => server.close(() => void service.dispose().then(() => process.exit(0))));
} else {
  try {
    await serve(service, process.stdin, process.stdout);
  } catch (error) {
    log(`stdin: ${(error as Error).message}`);
  }
  // stdin closed: ComfyUI is gone (or stopped us). Release everything and leave.
  await service.dispose();
  process.exit(0);
}
