import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { openModel, type OpenModel } from './pipeline-options.js';
import { startServer, type StreamServer } from './server.js';
import { fromRoot } from '../test-support/run-cli.js';


/** A test client: every message kept in order (text as parsed JSON, binary as bytes). */
interface Client {
  readonly socket: WebSocket;
  readonly messages: (Record<string, unknown> | Buffer)[];
  /** Resolves once `count` messages have arrived. */
  until(count: number): Promise<void>;
}

async function connect(url: string): Promise<Client> {
  const socket = new WebSocket(url);
  const messages: (Record<string, unknown> | Buffer)[] = [];
  const waiters: { count: number; done: () => void }[] = [];
  socket.on('message', (data, binary) => {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
    messages.push(binary ? bytes : (JSON.parse(bytes.toString('utf8')) as Record<string, unknown>));
    for (const waiter of waiters.filter((item) => messages.length >= item.count)) waiter.done();
  });
  await new Promise<void>((done, fail) => {
    socket.once('open', () => done());
    socket.once('error', fail);
  });
  return {
    socket,
    messages,
    until: (count) => (messages.length >= count ? Promise.resolve() : new Promise((done) => waiters.push({ count, done }))),
  };
}

describe('streamdiffusion serve (WebSocket, tiny model, CPU)', () => {
  let opened: OpenModel;
  let server: StreamServer;
  let frame: Buffer;
  beforeAll(async () => {
    opened = await openModel({ model: fromRoot('fixtures/models/tiny-sd-turbo'), device: 'cpu', width: '64', height: '64', cfgType: 'none', tIndexList: '20,40', prompt: 'a lighthouse' });
    server = await startServer(opened, { host: '127.0.0.1', port: 0 });
    frame = await readFile(fromRoot('fixtures/images/example.png'));
  });
  afterAll(async () => {
    await server.close();
    await opened.close();
  });

  it('greets each client, returns a JPEG per frame to several clients at once, and applies live updates to one client only', async () => {
    const [a, b] = await Promise.all([connect(server.url), connect(server.url)]);
    await Promise.all([a.until(1), b.until(1)]);
    expect(a.messages[0]).toMatchObject({ type: 'hello', protocol: 1, width: 64, height: 64, parameters: { prompt: 'a lighthouse', t_index_list: [20, 40] } });
    // The controls are the hot parameters' JSON Schema: live ones only (cfg_type needs a new pipeline).
    const controls = (a.messages[0] as { controls: { properties: Record<string, { type?: string; minimum?: number; maximum?: number; update?: string }> } }).controls.properties;
    expect(controls.guidance_scale).toMatchObject({ type: 'number', minimum: 0, maximum: 100, update: 'hot' });
    expect(Object.keys(controls)).toEqual(expect.arrayContaining(['prompt', 'negative_prompt', 't_index_list', 'seed', 'delta']));
    expect(Object.keys(controls)).not.toContain('cfg_type');
    expect(server.clients()).toBe(2);

    a.socket.send(frame);
    b.socket.send(frame);
    await Promise.all([a.until(3), b.until(3)]);
    for (const client of [a, b]) {
      expect(client.messages[1]).toMatchObject({ type: 'frame', index: 0 });
      const output = client.messages[2] as Buffer;
      const info = await sharp(output).metadata();
      expect([info.format, info.width, info.height]).toEqual(['jpeg', 64, 64]);
    }

    a.socket.send(JSON.stringify({ type: 'update', parameters: { prompt: 'a red boat', guidance_scale: 1.5 } }));
    await a.until(4);
    expect(a.messages[3]).toMatchObject({ type: 'updated', applied: ['prompt', 'guidance_scale'], needsReload: [], parameters: { prompt: 'a red boat' } });
    // A bad value names the key and changes nothing; the other client never saw the update.
    a.socket.send(JSON.stringify({ type: 'update', parameters: { t_index_list: [20, 99] } }));
    a.socket.send('not json');
    await a.until(6);
    // The malformed message is answered at once, the update once validated: either order.
    expect(a.messages.slice(4, 6)).toEqual(
      expect.arrayContaining([
        { type: 'error', message: expect.stringMatching(/(t_index_list|tIndexList).*99/) },
        { type: 'error', message: expect.stringMatching(/must be JSON/) },
      ]),
    );
    b.socket.send(JSON.stringify({ type: 'update', parameters: {} }));
    await b.until(4);
    expect(b.messages[3]).toMatchObject({ type: 'updated', parameters: { prompt: 'a lighthouse' } });

    // Frames keep flowing after the errors.
    a.socket.send(frame);
    await a.until(8);
    expect(a.messages[6]).toMatchObject({ type: 'frame', index: 1 });
    // A frame that cannot be decoded is answered with an error naming it, and the next one works.
    a.socket.send(Buffer.from('not an image'));
    await a.until(9);
    expect(a.messages[8]).toMatchObject({ type: 'error', frame: 2, message: expect.stringMatching(/^frame 2: /) });
    a.socket.send(frame);
    await a.until(11);
    expect(a.messages[9]).toMatchObject({ type: 'frame', index: 3 });
    a.socket.close();
    b.socket.close();
    await new Promise((done) => setTimeout(done, 200));
    expect(server.clients()).toBe(0);
  });

  it('keeps what a client sends while its pipeline is still being made, and disposes of the pipeline of a client that left meanwhile', async () => {
    // A pipeline that takes a while to make (as one with an IP-Adapter does: it embeds the style image).
    const made: { dispose(): Promise<void> }[] = [];
    let disposed = 0;
    const slow: OpenModel = {
      ...opened,
      pipeline: async () => {
        await new Promise((done) => setTimeout(done, 300));
        const stream = await opened.pipeline();
        made.push(stream);
        const dispose = stream.dispose.bind(stream);
        stream.dispose = async () => {
          disposed += 1;
          await dispose();
        };
        return stream;
      },
    };
    const lines: string[] = [];
    const slowServer = await startServer(slow, { host: '127.0.0.1', port: 0, log: (line) => lines.push(line) });
    try {
      // A frame and an update sent before the greeting are answered after it.
      const client = await connect(slowServer.url);
      client.socket.send(frame);
      client.socket.send(JSON.stringify({ type: 'update', parameters: { prompt: 'early' } }));
      await client.until(4);
      expect(client.messages[0]).toMatchObject({ type: 'hello' });
      expect(client.messages.slice(1).filter((message) => !Buffer.isBuffer(message))).toEqual(
        expect.arrayContaining([expect.objectContaining({ type: 'frame', index: 0 }), expect.objectContaining({ type: 'updated', applied: ['prompt'] })]),
      );
      expect(client.messages.filter((message) => Buffer.isBuffer(message))).toHaveLength(1);
      client.socket.close();

      // A client that leaves before its pipeline is ready: the pipeline is disposed of when it comes.
      const gone = await connect(slowServer.url);
      gone.socket.close();
      await new Promise((done) => setTimeout(done, 600));
      expect(made).toHaveLength(2);
      expect(disposed).toBe(2);
      expect(lines).toContain('client left before its pipeline was ready');
      expect(slowServer.clients()).toBe(0);
    } finally {
      await slowServer.close();
    }
  });
});
