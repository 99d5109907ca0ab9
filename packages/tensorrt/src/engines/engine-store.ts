/**
 * A content-addressed engine store: `<store>/<key>/engine.plan` + `meta.json`, where the key hashes
 * everything that makes an engine (the ONNX file's content, the LoRA set, precision, shape profiles,
 * GPU compute capability and TensorRT version). A key folder appears whole or not at all: it is
 * assembled under a temporary name and renamed into place. A lock file (created with O_EXCL,
 * holding pid, host and time) keeps two processes from building the same engine at once; a lock
 * whose process is gone is taken over.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, StreamDiffusionError } from '@streamdiffusion/core';
import type { EngineModelKind, EnginePrecision, InputProfile } from './engine-plan.js';

/** The folder engines are stored in: `$STREAMDIFFUSION_ENGINE_DIR`, else `~/.cache/streamdiffusion/engines`. */
export function defaultEngineStoreFolder(environment: Readonly<Record<string, string | undefined>> = process.env): string {
  const given = environment.STREAMDIFFUSION_ENGINE_DIR;
  return given !== undefined && given !== '' ? resolve(given) : join(homedir(), '.cache', 'streamdiffusion', 'engines');
}

/** The machine an engine is built for: an engine runs only on the GPU kind and TensorRT version it was built with. */
export interface BuildEnvironment {
  /** `8.9`, `9.0`, … */
  readonly computeCapability: string;
  /** `10.3.0`, … */
  readonly tensorrtVersion: string;
}

/** What makes an engine; equal parts give the same key. */
export interface EngineKeyParts extends BuildEnvironment {
  /** sha256 of the ONNX file's bytes. */
  readonly onnxSha256: string;
  /** The LoRA set's hash (made with the LoRA merge), or null when no LoRA is merged. */
  readonly loraHash: string | null;
  readonly precision: EnginePrecision;
  readonly inputs: readonly InputProfile[];
  /** A refittable engine (weights can be swapped without a rebuild) is a different engine. */
  readonly refittable?: boolean;
}

/** The store key of an engine: 32 hex digits of sha256 over its parts. */
export function engineKey(parts: EngineKeyParts): string {
  // Fixed field order, so the key does not depend on how the object was built.
  const canonical = JSON.stringify([
    'streamdiffusion-engine-v1',
    parts.onnxSha256,
    parts.loraHash,
    parts.precision,
    parts.inputs.map((input) => [input.name, input.min, input.opt, input.max]),
    parts.computeCapability,
    parts.tensorrtVersion,
    parts.refittable === true,
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

/** sha256 of a file, streamed (ONNX files reach gigabytes). */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `meta.json` of a stored engine. */
export interface EngineMeta extends EngineKeyParts {
  readonly formatVersion: 1;
  readonly key: string;
  /** `unet`, `vae_decoder`, `controlnet-0`, … */
  readonly name: string;
  readonly kind: EngineModelKind;
  /** The ONNX file it was built from, as it was then (path absolute). */
  readonly onnx: { readonly path: string; readonly bytes: number; readonly mtimeMs: number };
  /** ISO time the engine was stored. */
  readonly createdAt: string;
  readonly engineBytes: number;
  /** Seconds the build took, when known. */
  readonly buildSeconds?: number;
}

/** Why a stored engine no longer fits. */
export type StaleReason = 'onnx-missing' | 'onnx-changed' | 'tensorrt-version' | 'compute-capability' | 'unreadable';

/** A stored engine as `list()` sees it. */
export interface StoredEngine {
  readonly key: string;
  readonly folder: string;
  readonly enginePath: string;
  readonly meta: EngineMeta | undefined;
  /** Empty when the engine still fits. */
  readonly stale: readonly { readonly reason: StaleReason; readonly message: string }[];
}

/** Who holds a lock. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** ISO time the lock was taken. */
  readonly time: string;
}

/** A lock could not be had in time; says who holds it. */
export class EngineLockError extends StreamDiffusionError {
  readonly lockPath: string;
  readonly holder: LockHolder | undefined;

  constructor(options: { lockPath: string; holder: LockHolder | undefined; waitedMs: number }) {
    const who = options.holder === undefined ? 'another process' : `process ${options.holder.pid} on ${options.holder.host} (since ${options.holder.time})`;
    super({ code: 'engine-lock', message: `${options.lockPath}: still held by ${who} after ${Math.round(options.waitedMs / 1000)} s; if that process is gone, delete the lock file` });
    this.lockPath = options.lockPath;
    this.holder = options.holder;
  }
}

/** Options of a lock wait. */
export interface LockOptions {
  /** Give up after this long (default: wait as long as it takes; builds take minutes). */
  readonly timeoutMs?: number;
  /** Poll interval (default 200 ms). */
  readonly pollMs?: number;
  /** Told once when the lock is held by someone else and this process starts waiting. */
  readonly onWait?: (holder: LockHolder | undefined) => void;
}

/** What {@link EngineStore.prune} removes. */
export interface PruneOptions {
  /** Engines whose ONNX file changed or vanished, or that were built for another GPU / TensorRT version (`environment`). */
  readonly stale?: boolean;
  /** Engines stored more than this many days ago. */
  readonly olderThanDays?: number;
  /** Every engine. */
  readonly all?: boolean;
  /** The machine, for the GPU / TensorRT checks of `stale`. */
  readonly environment?: BuildEnvironment;
  /** The time to measure age from (default now). */
  readonly now?: Date;
}

/** What {@link EngineStore.ensure} needs. */
export interface EnsureOptions extends LockOptions {
  readonly meta: Omit<EngineMeta, 'formatVersion' | 'key' | 'createdAt' | 'engineBytes' | 'buildSeconds'>;
  /** Writes the engine to `enginePath` (a temporary file in the store). */
  readonly build: (enginePath: string) => Promise<void>;
}

/** An engine store folder. */
export interface EngineStore {
  readonly folder: string;
  keyOf(parts: EngineKeyParts): string;
  /** The engine of a key when it is stored (both files present), else undefined. */
  get(key: string): Promise<StoredEngine | undefined>;
  /**
   * The engine of `meta`'s key: the stored one, or built now under the key's lock. A process that
   * finds the lock held waits, then uses what the holder stored. `built` says whether this call built it.
   */
  ensure(options: EnsureOptions): Promise<StoredEngine & { readonly built: boolean }>;
  /** Runs `task` holding the key's lock. */
  withLock<T>(key: string, task: () => Promise<T>, options?: LockOptions): Promise<T>;
  /** Every stored engine, with why it is stale (GPU / TensorRT checks only with `environment`). */
  list(options?: { readonly environment?: BuildEnvironment }): Promise<StoredEngine[]>;
  /** Removes what `options` selects; returns what was removed. */
  prune(options: PruneOptions): Promise<StoredEngine[]>;
  /** The timing cache file for a machine (shared by that machine's builds). */
  timingCachePath(environment: BuildEnvironment): string;
}

const KEY_PATTERN = /^[0-9a-f]{32}$/;

function checkKey(key: string): void {
  if (!KEY_PATTERN.test(key)) throw new InvalidArgumentError({ field: 'key', value: key, expected: '32 lowercase hex digits (an engine key)' });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readHolder(path: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await readFile(path, 'utf8')) as Partial<LockHolder>;
    return typeof holder.pid === 'number' && typeof holder.host === 'string' && typeof holder.time === 'string' ? (holder as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** Creates the lock file exclusively; true when this process now holds it. */
async function tryCreate(path: string, holder: LockHolder): Promise<boolean> {
  try {
    const handle = await open(path, 'wx');
    try {
      await handle.writeFile(JSON.stringify(holder));
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Removes a lock whose process is gone. The removal itself runs under a second O_EXCL lock, and the
 * lock is read again under it, so two processes that both saw the dead lock cannot each remove a
 * fresh lock the other just took.
 */
async function takeOverIfDead(path: string, seen: LockHolder | undefined): Promise<void> {
  // Only a lock of this host can be checked; an unreadable lock may be one being written right now.
  if (seen === undefined || seen.host !== hostname() || processAlive(seen.pid)) return;
  const guard = `${path}.takeover`;
  const me: LockHolder = { pid: process.pid, host: hostname(), time: new Date().toISOString() };
  if (!(await tryCreate(guard, me))) {
    // A guard left by a process that died inside these few lines is removed after a while.
    const guardHolder = await readHolder(guard);
    if (guardHolder !== undefined && guardHolder.host === hostname() && !processAlive(guardHolder.pid)) await unlink(guard).catch(() => undefined);
    return;
  }
  try {
    const now = await readHolder(path);
    if (now !== undefined && now.pid === seen.pid && now.time === seen.time && now.host === seen.host) await unlink(path).catch(() => undefined);
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

async function acquire(path: string, options: LockOptions): Promise<void> {
  const started = performance.now();
  let told = false;
  for (;;) {
    if (await tryCreate(path, { pid: process.pid, host: hostname(), time: new Date().toISOString() })) return;
    const holder = await readHolder(path);
    await takeOverIfDead(path, holder);
    if (await tryCreate(path, { pid: process.pid, host: hostname(), time: new Date().toISOString() })) return;
    const waited = performance.now() - started;
    if (options.timeoutMs !== undefined && waited >= options.timeoutMs) throw new EngineLockError({ lockPath: path, holder: await readHolder(path), waitedMs: waited });
    if (!told) {
      options.onWait?.(holder);
      told = true;
    }
    await sleep(options.pollMs ?? 200);
  }
}

function staleReasons(meta: EngineMeta, onnx: { bytes: number; mtimeMs: number } | undefined, sameContent: boolean | undefined, environment: BuildEnvironment | undefined): StoredEngine['stale'] {
  const reasons: { reason: StaleReason; message: string }[] = [];
  if (onnx === undefined) reasons.push({ reason: 'onnx-missing', message: `${meta.onnx.path} is gone` });
  else if (sameContent === false) reasons.push({ reason: 'onnx-changed', message: `${meta.onnx.path} changed since the engine was built` });
  if (environment !== undefined && environment.tensorrtVersion !== meta.tensorrtVersion) {
    reasons.push({ reason: 'tensorrt-version', message: `built with TensorRT ${meta.tensorrtVersion}; this machine has ${environment.tensorrtVersion}` });
  }
  if (environment !== undefined && environment.computeCapability !== meta.computeCapability) {
    reasons.push({ reason: 'compute-capability', message: `built for compute capability ${meta.computeCapability}; this GPU is ${environment.computeCapability}` });
  }
  return reasons;
}

/** Opens (and creates) an engine store folder; default {@link defaultEngineStoreFolder}. */
export function createEngineStore(options: { readonly folder?: string } = {}): EngineStore {
  const folder = resolve(options.folder ?? defaultEngineStoreFolder());
  const keyFolder = (key: string): string => join(folder, key);
  const lockPath = (key: string): string => join(folder, `${key}.lock`);

  const read = async (key: string, environment?: BuildEnvironment): Promise<StoredEngine | undefined> => {
    const enginePath = join(keyFolder(key), 'engine.plan');
    let meta: EngineMeta | undefined;
    try {
      meta = JSON.parse(await readFile(join(keyFolder(key), 'meta.json'), 'utf8')) as EngineMeta;
      await stat(enginePath);
    } catch {
      if (meta === undefined && !(await stat(keyFolder(key)).then(() => true, () => false))) return undefined;
      return { key, folder: keyFolder(key), enginePath, meta, stale: [{ reason: 'unreadable', message: `${keyFolder(key)}: meta.json or engine.plan is missing or unreadable` }] };
    }
    const onnx = await stat(meta.onnx.path).then(
      (info) => ({ bytes: info.size, mtimeMs: info.mtimeMs }),
      () => undefined,
    );
    // Size and time unchanged: the same file. Otherwise the content decides (a touch is not a change).
    const sameContent = onnx === undefined ? undefined : onnx.bytes !== meta.onnx.bytes ? false : onnx.mtimeMs === meta.onnx.mtimeMs ? true : (await hashFile(meta.onnx.path)) === meta.onnxSha256;
    return { key, folder: keyFolder(key), enginePath, meta, stale: staleReasons(meta, onnx, sameContent, environment) };
  };

  const withLock = async <T>(key: string, task: () => Promise<T>, lockOptions: LockOptions = {}): Promise<T> => {
    checkKey(key);
    await mkdir(folder, { recursive: true });
    const path = lockPath(key);
    await acquire(path, lockOptions);
    try {
      return await task();
    } finally {
      await unlink(path).catch(() => undefined);
    }
  };

  const store: EngineStore = {
    folder,
    keyOf: engineKey,
    async get(key) {
      checkKey(key);
      const found = await read(key);
      return found?.meta === undefined ? undefined : found;
    },
    withLock,
    async ensure(ensureOptions) {
      const key = engineKey(ensureOptions.meta);
      return withLock(
        key,
        async () => {
          const present = await read(key);
          if (present?.meta !== undefined && present.stale.length === 0) return { ...present, built: false };
          const temporary = join(folder, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
          await mkdir(temporary, { recursive: true });
          try {
            const started = performance.now();
            const enginePath = join(temporary, 'engine.plan');
            await ensureOptions.build(enginePath);
            const engineBytes = (await stat(enginePath).catch(() => undefined))?.size;
            if (engineBytes === undefined || engineBytes === 0) throw new StreamDiffusionError({ code: 'engine-build', message: `the build of ${ensureOptions.meta.name} wrote no engine (${enginePath})` });
            const meta: EngineMeta = { formatVersion: 1, key, ...ensureOptions.meta, createdAt: new Date().toISOString(), engineBytes, buildSeconds: (performance.now() - started) / 1000 };
            await writeFile(join(temporary, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
            // Under the lock nobody else writes this key: a leftover (stale or broken) folder goes first.
            await rm(keyFolder(key), { recursive: true, force: true });
            await rename(temporary, keyFolder(key));
          } finally {
            await rm(temporary, { recursive: true, force: true });
          }
          const stored = await read(key);
          return { ...stored!, built: true };
        },
        ensureOptions,
      );
    },
    async list(listOptions = {}) {
      const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
      const found: StoredEngine[] = [];
      for (const entry of entries.filter((item) => item.isDirectory() && KEY_PATTERN.test(item.name)).sort((a, b) => a.name.localeCompare(b.name))) {
        const engine = await read(entry.name, listOptions.environment);
        if (engine !== undefined) found.push(engine);
      }
      return found;
    },
    async prune(pruneOptions) {
      const { stale = false, olderThanDays, all = false } = pruneOptions;
      if (olderThanDays !== undefined && !(Number.isFinite(olderThanDays) && olderThanDays >= 0)) {
        throw new InvalidArgumentError({ field: 'olderThanDays', value: olderThanDays, expected: 'a number of days ≥ 0' });
      }
      if (!stale && !all && olderThanDays === undefined) throw new InvalidArgumentError({ field: 'prune', value: pruneOptions, expected: 'stale, olderThanDays or all' });
      const now = (pruneOptions.now ?? new Date()).getTime();
      const removed: StoredEngine[] = [];
      for (const engine of await store.list(pruneOptions.environment === undefined ? {} : { environment: pruneOptions.environment })) {
        const created = engine.meta === undefined ? Number.NaN : Date.parse(engine.meta.createdAt);
        const old = olderThanDays !== undefined && (Number.isNaN(created) || now - created > olderThanDays * 86_400_000);
        if (!(all || (stale && engine.stale.length > 0) || old)) continue;
        // An engine being rebuilt right now is left alone.
        if (await stat(lockPath(engine.key)).then(() => true, () => false)) continue;
        await rm(engine.folder, { recursive: true, force: true });
        removed.push(engine);
      }
      return removed;
    },
    timingCachePath(environment) {
      return join(folder, `timing-sm${environment.computeCapability.replace('.', '')}-trt${environment.tensorrtVersion}.cache`);
    },
  };
  return store;
}
