/**
 * Pulls a model folder from the Hugging Face hub (or a mirror: any endpoint that speaks the hub's
 * API) through `@huggingface/hub`: the file list and the hub's hashes from `listFiles`, each file
 * from `downloadFile` (plain HTTP or Xet), resumed where an earlier pull stopped (a `.part` file
 * beside the target, continued with a range request) and checked against the hub's hash (sha256 for
 * LFS files, the git blob sha1 for the others) before it takes its name. Nothing here exits or
 * prints: failures are PullError with a kind, progress goes to a callback.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { downloadFile, HubApiError, listFiles, type ListFileEntry } from '@huggingface/hub';
import picomatch from 'picomatch';

/** What went wrong, for the exit code: the hub could not be reached (or the transfer broke off), the request was wrong, or the bytes were. */
export type PullErrorKind = 'unreachable' | 'invalid' | 'failed';

export class PullError extends Error {
  constructor(
    message: string,
    readonly kind: PullErrorKind,
  ) {
    super(message);
    this.name = 'PullError';
  }
}

/** Files never pulled unless `--include` asks: PyTorch, Flax and TensorFlow weights (the ONNX models hold their own), the safety checker (not loaded), git metadata. */
export const DEFAULT_EXCLUDE: readonly string[] = ['**/*.safetensors', '**/*.bin', '**/*.ckpt', '**/*.pt', '**/*.pth', '**/*.msgpack', '**/*.h5', 'safety_checker/**', '.gitattributes'];

export interface PullOptions {
  /** `owner/name`. */
  readonly repo: string;
  /** A branch, tag or commit (default `main`). */
  readonly revision?: string;
  /** The folder the files go into. */
  readonly destination: string;
  /** The hub (default `https://huggingface.co`). */
  readonly endpoint?: string;
  /** An access token, for gated and private repos. */
  readonly token?: string;
  /** Globs of the files to pull (default: every file but DEFAULT_EXCLUDE's). */
  readonly include?: readonly string[];
  /** Globs of files to leave out, on top of the selection. */
  readonly exclude?: readonly string[];
  /** How long a transfer may go without a byte before it counts as broken off (default 60 s). */
  readonly stallMs?: number;
  readonly onProgress?: (event: PullProgress) => void;
}

export type PullProgress =
  | { readonly type: 'start'; readonly files: number; readonly bytes: number; readonly present: number }
  | { readonly type: 'file'; readonly path: string; readonly size: number; readonly resumeAt: number }
  | { readonly type: 'bytes'; readonly path: string; readonly done: number; readonly total: number }
  | { readonly type: 'done'; readonly path: string; readonly status: PulledFile['status'] };

export interface PulledFile {
  readonly path: string;
  readonly size: number;
  /** `present`: already there with the right hash; `resumed`: continued from an earlier pull's part file. */
  readonly status: 'downloaded' | 'resumed' | 'present';
  /** What the bytes were checked against. */
  readonly check: 'sha256' | 'git-sha1' | 'size';
}

export interface PullResult {
  readonly repo: string;
  readonly revision: string;
  readonly destination: string;
  readonly files: readonly PulledFile[];
  /** Bytes that came over the network this time. */
  readonly downloadedBytes: number;
  /** Files of the repo left out by the selection. */
  readonly skipped: readonly string[];
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** The token: the given one, else $HF_TOKEN, else the one `huggingface-cli login` saved. */
export async function hubToken(given: string | undefined): Promise<string | undefined> {
  if (given !== undefined && given !== '') return given;
  const fromEnv = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const home = process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  const saved = await readFile(join(home, 'token'), 'utf8').catch(() => '');
  return saved.trim() === '' ? undefined : saved.trim();
}

const NETWORK_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** The system error code under a failed fetch (`TypeError: fetch failed` → cause → code), if any. */
function networkCode(error: unknown): string | undefined {
  for (let cause: unknown = error; typeof cause === 'object' && cause !== null; cause = (cause as { cause?: unknown }).cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    if (cause instanceof AggregateError) return cause.errors.map(networkCode).find((found) => found !== undefined);
  }
  return undefined;
}

/** The hub's answers, as errors that say what to do. */
function hubError(error: unknown, options: { repo: string; revision: string; endpoint: string; token: string | undefined }, what: string): PullError {
  if (error instanceof PullError) return error;
  const code = networkCode(error);
  if (code !== undefined) return new PullError(`cannot reach ${options.endpoint} (${code}) while ${what}: are you offline? Files already pulled are kept; run the same command again to continue`, 'unreachable');
  if (error instanceof HubApiError) {
    if (error.statusCode === 401 || error.statusCode === 403) {
      return new PullError(`${options.repo}: the hub refused access (${error.statusCode}) while ${what}; ${options.token === undefined ? 'a gated or private repo needs a token: give --token or set HF_TOKEN' : 'the token given has no access to it (accept the model’s licence on its page?)'}`, 'invalid');
    }
    if (error.statusCode === 404) return new PullError(`${options.repo}: no such model repo, or no revision "${options.revision}", on ${options.endpoint}`, 'invalid');
    return new PullError(`${options.endpoint} answered ${error.statusCode} while ${what}: ${error.message}`, error.statusCode >= 500 ? 'unreachable' : 'failed');
  }
  return new PullError(`${what}: ${error instanceof Error ? error.message : String(error)}`, 'failed');
}

/** The check for a file: sha256 for LFS files, the git blob sha1 (over "blob <size>\0" + bytes) for the rest. */
function checkerOf(entry: ListFileEntry): { readonly check: PulledFile['check']; readonly expected?: string; readonly hash?: Hash } {
  if (entry.lfs !== undefined) return { check: 'sha256', expected: entry.lfs.oid, hash: createHash('sha256') };
  if (entry.oid !== undefined) return { check: 'git-sha1', expected: entry.oid, hash: createHash('sha1').update(`blob ${entry.size}\0`) };
  return { check: 'size' };
}

async function hashInto(hash: Hash | undefined, path: string): Promise<void> {
  if (hash === undefined) return;
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

const sizeOf = async (path: string): Promise<number | undefined> => (await stat(path).catch(() => undefined))?.size;

/** The target of a hub path inside the destination; a path that would leave it is refused. */
function targetOf(destination: string, path: string): string {
  const target = resolve(destination, path);
  if (!target.startsWith(destination + sep)) throw new PullError(`the hub listed a file outside the repo folder: ${JSON.stringify(path)}`, 'failed');
  return target;
}

/** Free bytes on the disk the destination is (or will be) on. */
async function freeBytes(destination: string): Promise<number | undefined> {
  for (let folder = destination; ; folder = dirname(folder)) {
    const found = await statfs(folder).catch(() => undefined);
    if (found !== undefined) return found.bavail * found.bsize;
    if (dirname(folder) === folder) return undefined;
  }
}

/** The next chunk of a transfer, or an error when none comes within `stallMs`. */
async function nextChunk(reader: ReadableStreamDefaultReader<Uint8Array>, stallMs: number): ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> {
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

export async function pullModel(options: PullOptions): Promise<PullResult> {
  const revision = options.revision ?? 'main';
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const destination = resolve(options.destination);
  const token = options.token;
  const context = { repo: options.repo, revision, endpoint, token };
  if (!/^[\w.-]+\/[\w.-]+$/.test(options.repo)) throw new PullError(`repo: expected "owner/name" (as in https://huggingface.co/owner/name), got ${JSON.stringify(options.repo)}`, 'invalid');
  const hub = { repo: options.repo, revision, hubUrl: endpoint, ...(token === undefined ? {} : { accessToken: token }) };

  const listed: ListFileEntry[] = [];
  try {
    for await (const entry of listFiles({ ...hub, recursive: true })) if (entry.type === 'file') listed.push(entry);
  } catch (error) {
    throw hubError(error, context, `listing ${options.repo}`);
  }
  // --include replaces the default selection (and its exclusions); --exclude always applies.
  const include = options.include !== undefined && options.include.length > 0 ? options.include : undefined;
  const included = picomatch(include === undefined ? ['**'] : [...include], { dot: true });
  const excluded = picomatch([...(include === undefined ? DEFAULT_EXCLUDE : []), ...(options.exclude ?? [])], { dot: true });
  const chosen = (entry: ListFileEntry): boolean => included(entry.path) && !excluded(entry.path);
  const selected = listed.filter(chosen);
  const skipped = listed.filter((entry) => !chosen(entry)).map((entry) => entry.path);
  if (selected.length === 0) {
    throw new PullError(`${options.repo}@${revision}: no file to pull (${listed.length} in the repo, ${skipped.length} left out by the selection${include === undefined ? '' : ` --include ${include.join(' ')}`})`, 'invalid');
  }

  // What is already there (checked by hash) and what is left to fetch.
  const present = new Set<string>();
  for (const entry of selected) {
    const target = targetOf(destination, entry.path);
    if ((await sizeOf(target)) !== entry.size) continue;
    const { expected, hash } = checkerOf(entry);
    await hashInto(hash, target);
    if (hash === undefined || hash.digest('hex') === expected) present.add(entry.path);
  }
  const toFetch = selected.filter((entry) => !present.has(entry.path));
  let remaining = 0;
  for (const entry of toFetch) remaining += entry.size - Math.min((await sizeOf(`${targetOf(destination, entry.path)}.part`)) ?? 0, entry.size);
  const free = await freeBytes(destination);
  if (free !== undefined && remaining > free) {
    throw new PullError(`${destination}: ${(remaining / 1e9).toFixed(2)} GB to pull but ${(free / 1e9).toFixed(2)} GB free on that disk`, 'failed');
  }
  options.onProgress?.({ type: 'start', files: selected.length, bytes: remaining, present: present.size });

  const files: PulledFile[] = [];
  let downloadedBytes = 0;
  for (const entry of selected) {
    const target = targetOf(destination, entry.path);
    if (present.has(entry.path)) {
      files.push({ path: entry.path, size: entry.size, status: 'present', check: checkerOf(entry).check });
      options.onProgress?.({ type: 'done', path: entry.path, status: 'present' });
      continue;
    }
    const part = `${target}.part`;
    await mkdir(dirname(target), { recursive: true });
    let resumeAt = (await sizeOf(part)) ?? 0;
    if (resumeAt > entry.size) {
      await rm(part);
      resumeAt = 0;
    }
    const { check, expected, hash } = checkerOf(entry);
    if (resumeAt > 0) await hashInto(hash, part);
    options.onProgress?.({ type: 'file', path: entry.path, size: entry.size, resumeAt });

    let done = resumeAt;
    if (done < entry.size) {
      let blob: Blob | null;
      try {
        blob = await downloadFile({ ...hub, path: entry.path });
      } catch (error) {
        throw hubError(error, context, `fetching ${entry.path}`);
      }
      if (blob === null) throw new PullError(`${entry.path}: listed by the hub but not there to download (the revision changed while pulling? run again)`, 'failed');
      const reader = (resumeAt > 0 ? blob.slice(resumeAt) : blob).stream().getReader();
      const out = createWriteStream(part, { flags: resumeAt > 0 ? 'a' : 'w' });
      try {
        for (;;) {
          const { done: ended, value } = await nextChunk(reader, options.stallMs ?? 60_000);
          if (ended) break;
          done += value.byteLength;
          downloadedBytes += value.byteLength;
          if (done > entry.size) throw new PullError(`${entry.path}: the hub sent more than the ${entry.size} bytes it listed; the part file was removed, run again`, 'failed');
          hash?.update(value);
          if (!out.write(value)) await new Promise<void>((drained) => out.once('drain', () => drained()));
          options.onProgress?.({ type: 'bytes', path: entry.path, done, total: entry.size });
        }
      } catch (error) {
        await reader.cancel().catch(() => undefined);
        await new Promise((closed) => out.end(closed));
        if (error instanceof PullError) {
          await rm(part, { force: true });
          throw error;
        }
        throw new PullError(`${entry.path}: the transfer broke off at ${done} of ${entry.size} bytes (${hubError(error, context, 'downloading').message}); what came is kept in ${part}: run the same command again to resume`, 'unreachable');
      }
      await new Promise((closed) => out.end(closed));
      if (done < entry.size) throw new PullError(`${entry.path}: the transfer ended at ${done} of ${entry.size} bytes; what came is kept in ${part}: run the same command again to resume`, 'unreachable');
    }
    const actual = hash?.digest('hex');
    if (expected !== undefined && actual !== expected) {
      await rm(part, { force: true });
      throw new PullError(`${entry.path}: the bytes do not match the hub's ${check} (expected ${expected}, got ${actual}); the file was removed, run again to download it afresh`, 'failed');
    }
    await rename(part, target);
    const status = resumeAt > 0 ? 'resumed' : 'downloaded';
    files.push({ path: entry.path, size: entry.size, status, check });
    options.onProgress?.({ type: 'done', path: entry.path, status });
  }
  return { repo: options.repo, revision, destination, files, downloadedBytes, skipped };
}
