import { describe, expect, it } from 'vitest';
import { decodeMessages, encodeMessage } from './protocol.js';

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

describe('the sidecar’s framing', () => {
  it('decodes messages however the bytes are chunked, binary parts intact', async () => {
    const bytes = Buffer.concat([encodeMessage({ id: 1, method: 'hello' }), encodeMessage({ id: 2, method: 'sample' }, new Uint8Array([1, 2, 3, 250])), encodeMessage({ id: 3 })]);
    for (const size of [1, 3, 7, bytes.length]) {
      const messages = [];
      for await (const message of decodeMessages(chunked(bytes, size))) messages.push({ json: message.json, binary: [...message.binary] });
      expect(messages, `chunks of ${size}`).toEqual([
        { json: { id: 1, method: 'hello' }, binary: [] },
        { json: { id: 2, method: 'sample' }, binary: [1, 2, 3, 250] },
        { json: { id: 3 }, binary: [] },
      ]);
    }
  });

  it('says so when the stream ends inside a message, or a message is not a JSON object', async () => {
    const cut = encodeMessage({ id: 1 }, new Uint8Array(10)).subarray(0, 15);
    await expect((async () => { for await (const _ of decodeMessages(chunked(cut, 4))) void _; })()).rejects.toThrow(/ended inside a message \(15 bytes left\)/);
    const text = Buffer.from('[1,2]');
    const header = Buffer.alloc(8);
    header.writeUInt32BE(text.length, 0);
    await expect((async () => { for await (const _ of decodeMessages(chunked(Buffer.concat([header, text]), 64))) void _; })()).rejects.toThrow(/must be an object/);
  });
});
