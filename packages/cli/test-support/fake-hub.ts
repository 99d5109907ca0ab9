/**
 * A local stand-in for the Hugging Face hub, for `models pull` tests (CI has no network): it serves
 * one repo from a folder through the two endpoints a pull uses, as the hub answers them — the
 * paginated file tree (`/api/models/<repo>/tree/<rev>`, with LFS sha256 and git blob sha1 oids) and
 * `/<repo>/resolve/<rev>/<path>` with ETag and byte ranges — and can break a transfer off, serve
 * wrong bytes or ask for a token, to test what the client does then.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

export interface FakeHubOptions {
  /** `owner/name` of the one repo served. */
  readonly repo: string;
  /** The folder whose files are the repo's. */
  readonly folder: string;
  /** More files, path → bytes. */
  readonly extra?: Readonly<Record<string, Buffer>>;
  /** Requests without `Authorization: Bearer <token>` get 401. */
  readonly token?: string;
  /** Tree entries per page (the hub paginates with a Link header). */
  readonly pageSize?: number;
}

export interface FakeHub {
  readonly url: string;
  /** Every request: method, path, Range header. */
  readonly requests: { readonly method: string; readonly url: string; readonly range?: string }[];
  /** The next download of `path` stops after `bytes` bytes (the connection is dropped). */
  cutOnce(path: string, bytes: number): void;
  /** Downloads of `path` serve these bytes instead (the tree still lists the right hash). */
  corrupt(path: string, bytes: Buffer): void;
  readonly files: ReadonlyMap<string, Buffer>;
  close(): Promise<void>;
}

async function filesOf(folder: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true, recursive: true })) if (entry.isFile()) found.push(join(entry.parentPath, entry.name));
  return found;
}

export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const files = new Map<string, Buffer>();
  for (const path of await filesOf(options.folder)) files.set(relative(options.folder, path).split('\\').join('/'), await readFile(path));
  for (const [path, bytes] of Object.entries(options.extra ?? {})) files.set(path, bytes);
  const sorted = [...files.keys()].sort();
  const folders = [...new Set(sorted.flatMap((path) => path.split('/').slice(0, -1).map((_, index, parts) => parts.slice(0, index + 1).join('/'))))];
  // As the hub lists them: .onnx files (and anything large) in LFS with their sha256, the rest in git.
  const tree = [
    ...folders.map((path) => ({ type: 'directory', oid: createHash('sha1').update(path).digest('hex'), size: 0, path })),
    ...sorted.map((path) => {
      const bytes = files.get(path)!;
      const lfs = path.endsWith('.onnx') || bytes.length > 100_000;
      return {
        type: 'file',
        path,
        size: bytes.length,
        oid: createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex'),
        ...(lfs ? { lfs: { oid: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, pointerSize: 134 } } : {}),
      };
    }),
  ];
  const requests: { method: string; url: string; range?: string }[] = [];
  const cuts = new Map<string, number>();
  const corrupted = new Map<string, Buffer>();
  const pageSize = options.pageSize ?? 4;

  const json = (response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };

  const handle = (request: IncomingMessage, response: ServerResponse, base: string): void => {
    requests.push({ method: request.method ?? 'GET', url: request.url ?? '', ...(request.headers.range === undefined ? {} : { range: request.headers.range }) });
    if (options.token !== undefined && request.headers.authorization !== `Bearer ${options.token}`) {
      json(response, 401, { error: 'Invalid credentials in Authorization header' });
      return;
    }
    const url = new URL(request.url ?? '/', base);
    const treeMatch = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (treeMatch !== null) {
      if (treeMatch[1] !== options.repo) return json(response, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (treeMatch[2] !== 'main') return json(response, 404, { error: `Invalid rev id: ${treeMatch[2]}` }, { 'x-error-code': 'RevisionNotFound' });
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const next = cursor + pageSize < tree.length ? `${base}${url.pathname}?recursive=true&expand=false&cursor=${cursor + pageSize}` : undefined;
      return json(response, 200, tree.slice(cursor, cursor + pageSize), next === undefined ? {} : { link: `<${next}>; rel="next"` });
    }
    const prefix = `/${options.repo}/resolve/main/`;
    const path = url.pathname.startsWith(prefix) ? decodeURIComponent(url.pathname.slice(prefix.length)) : undefined;
    const original = path === undefined ? undefined : files.get(path);
    if (path === undefined || original === undefined) return json(response, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
    const bytes = corrupted.get(path) ?? original;
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    const start = range === null ? 0 : Number(range[1]);
    const end = range === null || range[2] === '' ? bytes.length - 1 : Math.min(Number(range[2]), bytes.length - 1);
    const etag = `"${createHash('sha256').update(original).digest('hex')}"`;
    if (start >= bytes.length) return json(response, 416, { error: 'Range Not Satisfiable' }, { 'content-range': `bytes */${bytes.length}` });
    const body = bytes.subarray(start, end + 1);
    response.writeHead(range === null ? 200 : 206, {
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
      etag,
      'accept-ranges': 'bytes',
      ...(range === null ? {} : { 'content-range': `bytes ${start}-${end}/${bytes.length}` }),
    });
    const cut = cuts.get(path);
    if (cut !== undefined && body.length > 1) {
      cuts.delete(path);
      response.write(body.subarray(0, cut), () => response.socket?.destroy());
      return;
    }
    response.end(body);
  };

  let base = '';
  const server: Server = createServer((request, response) => handle(request, response, base));
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    files,
    cutOnce: (path, bytes) => cuts.set(path, bytes),
    corrupt: (path, bytes) => corrupted.set(path, bytes),
    close: () =>
      new Promise<void>((closed) => {
        server.closeAllConnections();
        server.close(() => closed());
      }),
  };
}
