import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '@streamdiffusion/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEngineStore, defaultEngineStoreFolder, EngineLockError, engineKey, hashFile, type EngineKeyParts, type EngineMeta } from './engine-store.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../../..');
const VAE_DECODER = join(ROOT, 'fixtures/models/tiny-sd-turbo/vae_decoder/model.onnx');

const parts: EngineKeyParts = {
  onnxSha256: 'a'.repeat(64),
  loraHash: null,
  precision: 'fp16',
  inputs: [{ name: 'latent_sample', min: [1, 4, 32, 32], opt: [1, 4, 64, 64], max: [1, 4, 128, 128] }],
  computeCapability: '9.0',
  tensorrtVersion: '10.3.0',
};

/** Runs `node --import tsx <script> ...args` from the repository root, reading packages' sources (no build needed); resolves with its stdout. */
function child(script: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const process_ = spawn(process.execPath, ['--import', 'tsx', '--conditions=@streamdiffusion/source', script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    process_.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    process_.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    process_.on('error', fail);
    process_.on('close', (code) => done({ code, stdout, stderr }));
  });
}

describe('engine keys', () => {
  it('change with every part that makes an engine, and not with how the object was written', () => {
    const key = engineKey(parts);
    expect(key).toMatch(/^[0-9a-f]{32}$/);
    expect(engineKey({ tensorrtVersion: '10.3.0', computeCapability: '9.0', inputs: parts.inputs, precision: 'fp16', loraHash: null, onnxSha256: 'a'.repeat(64) })).toBe(key);
    const changed: Partial<EngineKeyParts>[] = [
      { onnxSha256: 'b'.repeat(64) },
      { loraHash: 'c'.repeat(64) },
      { precision: 'fp32' },
      { inputs: [{ ...parts.inputs[0]!, max: [1, 4, 96, 96] }] },
      { inputs: [{ ...parts.inputs[0]!, name: 'sample' }] },
      { computeCapability: '8.9' },
      { tensorrtVersion: '10.4.0' },
      { refittable: true },
    ];
    const keys = changed.map((change) => engineKey({ ...parts, ...change }));
    expect(new Set([key, ...keys]).size).toBe(changed.length + 1);
  });

  it('hash files by content', async () => {
    const { createHash } = await import('node:crypto');
    expect(await hashFile(VAE_DECODER)).toBe(createHash('sha256').update(await readFile(VAE_DECODER)).digest('hex'));
  });

  it('default to $STREAMDIFFUSION_ENGINE_DIR, else ~/.cache/streamdiffusion/engines', () => {
    expect(defaultEngineStoreFolder({ STREAMDIFFUSION_ENGINE_DIR: '/srv/engines' })).toBe('/srv/engines');
    expect(defaultEngineStoreFolder({})).toMatch(/\/\.cache\/streamdiffusion\/engines$/);
  });
});

describe('the engine store', () => {
  let folder: string;
  let onnx: string;
  let meta: EnsureMeta;
  type EnsureMeta = Omit<EngineMeta, 'formatVersion' | 'key' | 'createdAt' | 'engineBytes' | 'buildSeconds'>;
  beforeEach(async () => {
    folder = await mkdtemp(join(tmpdir(), 'sd-engines-'));
    onnx = join(folder, 'model.onnx');
    await copyFile(VAE_DECODER, onnx);
    const info = await stat(onnx);
    meta = { ...parts, onnxSha256: await hashFile(onnx), name: 'vae_decoder', kind: 'vae_decoder', onnx: { path: onnx, bytes: info.size, mtimeMs: info.mtimeMs } };
  });
  afterEach(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('stores <key>/engine.plan and meta.json once, and hands the stored engine back after', async () => {
    const store = createEngineStore({ folder: join(folder, 'store') });
    let builds = 0;
    const build = async (path: string) => {
      builds += 1;
      await writeFile(path, 'engine bytes');
    };
    const first = await store.ensure({ meta, build });
    expect(first.built).toBe(true);
    expect(first.key).toBe(engineKey(meta));
    expect(first.enginePath).toBe(join(folder, 'store', first.key, 'engine.plan'));
    expect(await readFile(first.enginePath, 'utf8')).toBe('engine bytes');
    const written = JSON.parse(await readFile(join(folder, 'store', first.key, 'meta.json'), 'utf8')) as EngineMeta;
    expect(written).toMatchObject({ formatVersion: 1, key: first.key, name: 'vae_decoder', engineBytes: 12, onnxSha256: meta.onnxSha256, tensorrtVersion: '10.3.0' });
    const second = await store.ensure({ meta, build });
    expect(second.built).toBe(false);
    expect(builds).toBe(1);
    expect((await store.get(first.key))?.enginePath).toBe(first.enginePath);
    // Only the key folder is left: no temporary folder, no lock.
    expect(await readdir(join(folder, 'store'))).toEqual([first.key]);
  });

  it('leaves nothing behind when a build fails or writes no engine', async () => {
    const store = createEngineStore({ folder: join(folder, 'store') });
    await expect(
      store.ensure({
        meta,
        build: async (path) => {
          await writeFile(path, 'half an engine');
          throw new Error('trtexec died');
        },
      }),
    ).rejects.toThrow('trtexec died');
    await expect(store.ensure({ meta, build: async () => undefined })).rejects.toThrow(/wrote no engine/);
    expect(await readdir(join(folder, 'store'))).toEqual([]);
    expect(await store.get(engineKey(meta))).toBeUndefined();
  });

  it('lets one of two racing processes build while the other waits and uses its engine', async () => {
    const script = join(folder, 'race.mts');
    await writeFile(
      script,
      [
        `import { appendFile, writeFile } from 'node:fs/promises';`,
        `import { createEngineStore } from ${JSON.stringify(join(HERE, 'engine-store.ts'))};`,
        `const [storeFolder, log, metaJson, mode, startAt] = process.argv.slice(2);`,
        `const meta = JSON.parse(metaJson);`,
        `const store = createEngineStore({ folder: storeFolder });`,
        `while (Date.now() < Number(startAt)) await new Promise((done) => setTimeout(done, 2));`,
        `const work = async (path) => {`,
        `  await appendFile(log, 'start ' + process.pid + ' ' + Date.now() + '\\n');`,
        `  await new Promise((done) => setTimeout(done, 400));`,
        `  if (path) await writeFile(path, 'engine of ' + process.pid);`,
        `  await appendFile(log, 'end ' + process.pid + ' ' + Date.now() + '\\n');`,
        `};`,
        `if (mode === 'lock') { await store.withLock(store.keyOf(meta), () => work(), { pollMs: 20 }); console.log('done'); }`,
        `else { const engine = await store.ensure({ meta, build: work, pollMs: 20 }); console.log(JSON.stringify({ built: engine.built, key: engine.key, enginePath: engine.enginePath })); }`,
      ].join('\n'),
    );
    const storeFolder = join(folder, 'store');
    const lockLog = join(folder, 'lock.log');
    const buildLog = join(folder, 'build.log');
    // Four processes start together: two race for the lock alone (in a store of their own), two to build.
    const startAt = String(Date.now() + 1200);
    const all = await Promise.all([
      ...[0, 1].map(() => child(script, [join(folder, 'lock-store'), lockLog, JSON.stringify(meta), 'lock', startAt])),
      ...[0, 1].map(() => child(script, [storeFolder, buildLog, JSON.stringify(meta), 'ensure', startAt])),
    ]);
    for (const result of all) expect(result, result.stderr).toMatchObject({ code: 0 });
    const locked = all.slice(0, 2);
    const raced = all.slice(2);
    expect(locked.map((result) => result.stdout.trim())).toEqual(['done', 'done']);

    // The lock alone: both ran their task, never at the same time.
    const events = (await readFile(lockLog, 'utf8')).trim().split('\n').map((line) => line.split(' '));
    expect(events.map(([kind]) => kind)).toEqual(['start', 'end', 'start', 'end']);
    expect(events[0]![1]).toBe(events[1]![1]);
    expect(events[2]![1]).toBe(events[3]![1]);
    expect(events[0]![1]).not.toBe(events[2]![1]);

    // ensure: one built, the other waited and found the engine stored.
    const reports = raced.map((result) => JSON.parse(result.stdout) as { built: boolean; key: string; enginePath: string });
    expect(reports.map((report) => report.built).sort()).toEqual([false, true]);
    expect(reports[0]!.enginePath).toBe(reports[1]!.enginePath);
    expect((await readFile(buildLog, 'utf8')).trim().split('\n')).toHaveLength(2);
    const builder = (await readFile(buildLog, 'utf8')).split(' ')[1];
    expect(await readFile(reports[0]!.enginePath, 'utf8')).toBe(`engine of ${builder}`);
  });

  it('takes over a lock whose process is gone, and waits for (then names) a live holder', async () => {
    const store = createEngineStore({ folder: join(folder, 'store') });
    const key = engineKey(meta);
    const gone = await new Promise<number>((done) => {
      const exited = spawn(process.execPath, ['-e', '0']);
      exited.on('close', () => done(exited.pid!));
    });
    await store.withLock(key, async () => undefined); // creates the folder
    await writeFile(join(folder, 'store', `${key}.lock`), JSON.stringify({ pid: gone, host: hostname(), time: new Date().toISOString() }));
    const started = performance.now();
    expect(await store.withLock(key, async () => 'ran', { timeoutMs: 2000 })).toBe('ran');
    expect(performance.now() - started).toBeLessThan(1000);

    // This very process holds the lock (alive): a second taker waits, then gives up naming it.
    const holder = { pid: process.pid, host: hostname(), time: new Date().toISOString() };
    await writeFile(join(folder, 'store', `${key}.lock`), JSON.stringify(holder));
    const waits: unknown[] = [];
    const error = await store.withLock(key, async () => 'ran', { timeoutMs: 300, pollMs: 20, onWait: (who) => waits.push(who) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineLockError);
    expect((error as EngineLockError).holder).toEqual(holder);
    expect((error as Error).message).toContain(`process ${process.pid} on ${hostname()}`);
    expect(waits).toEqual([holder]);
  });

  it('lists engines with why they are stale (ONNX changed or gone, another TensorRT or GPU), and prunes what is asked', async () => {
    const store = createEngineStore({ folder: join(folder, 'store') });
    const write = async (path: string) => writeFile(path, 'engine');
    const a = await store.ensure({ meta, build: write });
    const otherOnnx = join(folder, 'other.onnx');
    await copyFile(VAE_DECODER, otherOnnx);
    const otherInfo = await stat(otherOnnx);
    const b = await store.ensure({ meta: { ...meta, precision: 'fp32', onnx: { path: otherOnnx, bytes: otherInfo.size, mtimeMs: otherInfo.mtimeMs } }, build: write });
    expect((await store.list()).map((engine) => [engine.key, engine.stale])).toEqual(
      [
        [a.key, []],
        [b.key, []],
      ].sort(),
    );
    // Touched, same bytes: still fits.
    await utimes(onnx, new Date(), new Date(Date.now() + 5000));
    expect((await store.list()).every((engine) => engine.stale.length === 0)).toBe(true);
    // Other bytes, same size: changed.
    const bytes = await readFile(onnx);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(onnx, bytes);
    await rm(otherOnnx);
    const reasons = Object.fromEntries((await store.list()).map((engine) => [engine.key, engine.stale.map((stale) => stale.reason)]));
    expect(reasons).toEqual({ [a.key]: ['onnx-changed'], [b.key]: ['onnx-missing'] });
    const elsewhere = await store.list({ environment: { computeCapability: '8.6', tensorrtVersion: '10.5.0' } });
    expect(elsewhere.find((engine) => engine.key === a.key)?.stale.map((stale) => stale.reason)).toEqual(['onnx-changed', 'tensorrt-version', 'compute-capability']);

    // Prune: stale ones only; then by age; then all.
    await writeFile(onnx, await readFile(VAE_DECODER));
    const fresh = await store.ensure({ meta: { ...meta, loraHash: 'f'.repeat(64) }, build: write });
    expect((await store.prune({ stale: true })).map((engine) => engine.key).sort()).toEqual([b.key]);
    const later = new Date(Date.now() + 10 * 86_400_000);
    expect(await store.prune({ olderThanDays: 30, now: later })).toEqual([]);
    expect((await store.prune({ olderThanDays: 5, now: later })).map((engine) => engine.key).sort()).toEqual([a.key, fresh.key].sort());
    await store.ensure({ meta, build: write });
    expect(await store.prune({ all: true })).toHaveLength(1);
    expect(await store.list()).toEqual([]);
    await expect(store.prune({})).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.prune({ olderThanDays: -1 })).rejects.toThrow(/^olderThanDays: expected a number of days ≥ 0, got -1$/);
    await expect(store.get('../etc')).rejects.toThrow(/^key: expected 32 lowercase hex digits/);
  });
});
