/**
 * The WebSocket server behind the demo (`streamdiffusion serve`): one model, one pipeline per
 * connected client, frames in and out as encoded images, parameters changed live.
 *
 * Protocol (one WebSocket per client at `/stream`):
 * - server → client, text: `{ "type": "hello", "protocol": 1, "width", "height", "parameters",
 *   "controls" }` once: the parameters in force, and `controls`, the JSON Schema of the hot ones
 *   (the parameter schema's, wrappers' included), from which the demo builds its controls.
 * - client → server, binary: one frame, an encoded image (JPEG, PNG or WebP) of any size. While the
 *   pipeline is busy, a newer frame replaces a waiting one (never a growing queue).
 * - server → client, per processed frame: text `{ "type": "frame", "index", "dropped", "fps",
 *   "timings" }`, then binary: the output as JPEG.
 * - client → server, text: `{ "type": "update", "parameters": { … } }` (any hot parameter, the
 *   config-file keys) → `{ "type": "updated", "applied", "needsReload" }`, or
 *   `{ "type": "error", "message" }` naming the key; the stream runs on unchanged. A frame that
 *   failed is answered `{ "type": "error", "frame": index, "message" }` instead of its output.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { createFrameStream, type StreamDiffusion } from '@streamdiffusion/core';
import sharp from 'sharp';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { z } from 'zod';
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

/** The JSON Schema of the pipeline's hot parameters (wrappers' included): what a client may change live. */
export function controlsSchema(stream: StreamDiffusion): { readonly properties: Record<string, Record<string, unknown>> } {
  // Pixels (an IP-Adapter style image given in code) have no JSON form; a client sends paths or data: URLs.
  const schema = z.toJSONSchema(stream.parametersSchema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, Record<string, unknown>> };
  const properties = Object.fromEntries(Object.entries(schema.properties ?? {}).filter(([, property]) => property.update === 'hot'));
  return { properties };
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

const bytesOf = (data: RawData): Buffer => (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));

/** Serves one client: its own pipeline and frame stream, until the socket closes. */
async function serveClient(socket: WebSocket, opened: OpenModel, log: (line: string) => void): Promise<void> {
  // Listen from the first moment: what the client sends while its pipeline is being made (which
  // can take a while: an IP-Adapter embeds its style image) is handled once it is ready, and a
  // client that leaves meanwhile is noticed.
  const closed = new Promise<void>((done) => socket.once('close', () => done()));
  const early: [RawData, boolean][] = [];
  const keep = (data: RawData, binary: boolean): void => void early.push([data, binary]);
  socket.on('message', keep);
  let stream: StreamDiffusion;
  try {
    stream = await opened.pipeline();
  } catch (error) {
    send(socket, { type: 'error', message: (error as Error).message });
    socket.close(1011, 'no pipeline');
    return;
  } finally {
    socket.off('message', keep);
  }
  if (socket.readyState !== socket.OPEN) {
    await stream.dispose();
    log('client left before its pipeline was ready');
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
        send(socket, { type: 'error', frame: result.index, message: `frame ${result.index}: ${(result.error as Error).message}` });
        continue;
      }
      const { stats } = frames;
      send(socket, { type: 'frame', index: result.index, dropped: stats.dropped, fps: stats.fps, timings: result.timing });
      if (socket.readyState === socket.OPEN) socket.send(result.output);
    }
  })();
  send(socket, { type: 'hello', protocol: PROTOCOL, width: stream.width, height: stream.height, parameters: stream.getState(), controls: controlsSchema(stream) });

  const handle = (data: RawData, binary: boolean): void => {
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
  };
  socket.on('message', handle);
  for (const [data, binary] of early) handle(data, binary);
  await closed;
  await frames.dispose();
  await delivering;
  await stream.dispose();
  log(`client left (${frames.stats.processed} frames, ${frames.stats.dropped} dropped)`);
}

/**
 * Starts the server on `host:port` (port 0: any free port). With `staticDir`, its files are served
 * over HTTP at the same address (the demo page); without, `/` says where the WebSocket is.
 */
export async function startServer(
  opened: OpenModel,
  options: { readonly host: string; readonly port: number; readonly staticDir?: string; readonly log?: (line: string) => void },
): Promise<StreamServer> {
  const log = options.log ?? (() => undefined);
  const root = options.staticDir === undefined ? undefined : resolve(options.staticDir);
  const http: Server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    const notFound = () => {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('not found\n');
    };
    if (root === undefined) {
      if (path !== '/') return notFound();
      response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(`streamdiffusion serve: connect a WebSocket to /stream (protocol ${PROTOCOL})\n`);
      return;
    }
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep)) return notFound();
    readFile(file).then(
      (body) => {
        response.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
        response.end(body);
      },
      () => notFound(),
    );
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
