/**
 * The sidecar's wire format, the same over stdin/stdout and over a TCP socket: each message is an
 * 8-byte header (the JSON part's length and the binary part's length, both big-endian uint32), then
 * the JSON (UTF-8), then the binary part (frames as uint8 RGB, no copies through JSON). Requests are
 * `{ id, method, params }`; answers `{ id, ok: true, result }` or `{ id, ok: false, error: { message } }`.
 */

export interface Message {
  readonly json: Record<string, unknown>;
  readonly binary: Uint8Array;
}

/** One message as bytes. */
export function encodeMessage(json: Record<string, unknown>, binary: Uint8Array = new Uint8Array(0)): Buffer {
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const header = Buffer.alloc(8);
  header.writeUInt32BE(text.length, 0);
  header.writeUInt32BE(binary.byteLength, 4);
  return Buffer.concat([header, text, binary]);
}

/**
 * Messages out of a byte stream, however it is chunked. Chunks are only collected until a message's
 * bytes are all there, then joined once: a frame arriving in many chunks is not copied per chunk,
 * and its binary part is a view of those bytes (valid while the message is used, as the service does).
 */
export async function* decodeMessages(chunks: AsyncIterable<Buffer>): AsyncGenerator<Message> {
  const held: Buffer[] = [];
  let size = 0;
  // Bytes needed before looking again: the header, then the whole message it announces.
  let needed = 8;
  for await (const chunk of chunks) {
    held.push(chunk);
    size += chunk.length;
    while (size >= needed) {
      const pending = held.length === 1 ? held[0]! : Buffer.concat(held, size);
      held.splice(0, held.length, pending);
      const jsonLength = pending.readUInt32BE(0);
      const total = 8 + jsonLength + pending.readUInt32BE(4);
      if (size < total) {
        needed = total;
        break;
      }
      const json = JSON.parse(pending.subarray(8, 8 + jsonLength).toString('utf8')) as unknown;
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('a message’s JSON part must be an object');
      // A view, not a copy: frames are megabytes, and the service only reads them.
      yield { json: json as Record<string, unknown>, binary: new Uint8Array(pending.buffer, pending.byteOffset + 8 + jsonLength, total - 8 - jsonLength) };
      const rest = pending.subarray(total);
      held.splice(0, held.length, ...(rest.length > 0 ? [rest] : []));
      size = rest.length;
      needed = 8;
    }
  }
  if (size > 0) throw new Error(`the stream ended inside a message (${size} bytes left)`);
}
