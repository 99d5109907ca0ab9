/**
 * The WebSocket server behind the demo (`streamdiffusion serve`): one model, one pipeline per
 * connected client, frames in and out as encoded images, parameters changed live.
 *
 * Protocol (one WebSocket per client at `/stream`):
 * - server → client, text: `{ "type": "hello", "protocol": 1, "width", "height", "parameters" }`
 *   once, with the pipeline's parameters in force.
 * - client → server, binary: one frame, an encoded image (JPEG, PNG or WebP) of any size. While the
 *   pipeline is busy, a newer frame replaces a waiting one (never a growing queue).
 * - server → client, per processed frame: text `{ "type": "frame", "index", "dropped", "fps",
 *   "timings" }`, then binary: the output as JPEG.
 * - client → server, text: `{ "type": "update", "parameters": { … } }` (any hot parameter, the
 *   config-file keys) → `{ "type": "updated", "applied", "needsReload" }`, or
 *   `{ "type": "error", "message" }` naming the key; the stream runs on unchanged.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createFrameStream, type StreamDiffusion } from '@streamdiffusion/core';
import sharp from 'sharp';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { OpenModel } from './pipeline-options.js';

/** A running server. */
export interface StreamServer {
  /** `ws://host:port/stream`. */
  readonly url: string;
  /** Clients connected now. */
  clients(): number;
  /** Closes every connection and the server (the model stays; close it after). */
  close(): Promise<void>;
}

const PROTOCOL = 1;

function send(socket: WebSocket, message: Record<string, unknown>): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}

const bytesOf = (data: RawData): Buffer => (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));

/** Serves one client: its own pipeline and frame stream, until the socket closes. */
async function serveClient(socket: WebSocket, opened: OpenModel, log: (line: string) => void): Promise<void> {
  let stream: StreamDiffusion;
  try {
    stream = await opened.pipeline();
  } catch (error) {
    send(socket, { type: 'error', message: (error as Error).message });
    socket.close(1011, 'no pipeline');
    return;
  }
  const frames = createFrameStream<Buffer, Buffer>({
    process: async (input) => {
      const result = await stream.img2img(new Uint8Array(input.buffer, input.byteOffset, input.byteLength));
      const image = result.images[0]!;
      return sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } }).jpeg({ quality: 85 }).toBuffer();
    },
  });
  const delivering = (async () => {
    for await (const result of frames.results()) {
      if ('error' in result) {
        send(socket, { type: 'error', message: `frame ${result.index}: ${(result.error as Error).message}` });
        continue;
      }
      const { stats } = frames;
      send(socket, { type: 'frame', index: result.index, dropped: stats.dropped, fps: stats.fps, timings: result.timing });
      if (socket.readyState === socket.OPEN) socket.send(result.output);
    }
  })();
  send(socket, { type: 'hello', protocol: PROTOCOL, width: stream.width, height: stream.height, parameters: stream.getState() });

  socket.on('message', (data, binary) => {
    if (binary) {
      frames.push(bytesOf(data));
      return;
    }
    let message: { type?: unknown; parameters?: unknown };
    try {
      message = JSON.parse(bytesOf(data).toString('utf8')) as typeof message;
    } catch {
      send(socket, { type: 'error', message: 'a text message must be JSON ({ "type": "update", "parameters": { … } })' });
      return;
    }
    if (message.type !== 'update' || typeof message.parameters !== 'object' || message.parameters === null) {
      send(socket, { type: 'error', message: `unknown message type ${JSON.stringify(message.type)}; expected "update" with an object "parameters"` });
      return;
    }
    // The updater validates (naming the key) and lands the change between two frames.
    Promise.resolve()
      .then(() => stream.update(message.parameters as Parameters<StreamDiffusion['update']>[0]))
      .then(
        (result) => send(socket, { type: 'updated', applied: result.applied, needsReload: result.needsReload, parameters: stream.getState() }),
        (error: unknown) => send(socket, { type: 'error', message: (error as Error).message }),
      );
  });
  await new Promise<void>((done) => socket.once('close', () => done()));
  await frames.dispose();
  await delivering;
  await stream.dispose();
  log(`client left (${frames.stats.processed} frames, ${frames.stats.dropped} dropped)`);
}

/** Starts the server on `host:port` (port 0: any free port). */
export async function startServer(opened: OpenModel, options: { readonly host: string; readonly port: number; readonly log?: (line: string) => void }): Promise<StreamServer> {
  const log = options.log ?? (() => undefined);
  const http: Server = createServer((request, response) => {
    response.writeHead(request.url === '/' ? 200 : 404, { 'content-type': 'text/plain; charset=utf-8' });
    response.end(request.url === '/' ? `streamdiffusion serve: connect a WebSocket to /stream (protocol ${PROTOCOL})\n` : 'not found\n');
  });
  const sockets = new WebSocketServer({ server: http, path: '/stream' });
  const serving = new Set<Promise<void>>();
  sockets.on('connection', (socket) => {
    log('client joined');
    const served = serveClient(socket, opened, log).finally(() => serving.delete(served));
    serving.add(served);
  });
  await new Promise<void>((done, fail) => {
    http.once('error', fail);
    http.listen(options.port, options.host, () => done());
  });
  const address = http.address() as AddressInfo;
  return {
    url: `ws://${options.host}:${address.port}/stream`,
    clients: () => sockets.clients.size,
    close: async () => {
      for (const socket of sockets.clients) socket.close(1001, 'server closing');
      await Promise.allSettled([...serving]);
      await new Promise<void>((done) => sockets.close(() => done()));
      await new Promise<void>((done) => http.close(() => done()));
    },
  };
}
