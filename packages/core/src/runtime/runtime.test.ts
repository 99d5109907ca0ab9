import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceUnavailableError, DisposedError, TensorInputError } from '../errors/errors.js';
import { StreamDiffusionError } from '../errors/streamdiffusion-error.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from './dtypes.js';
import { hostTensor } from './host-tensor.js';
import { createRuntime, type Runtime } from './runtime.js';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../test-fixtures/runtime/${name}.onnx`, import.meta.url));

describe('runtime on the CPU', () => {
  let runtime: Runtime;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  it('reports the device it runs on and why', () => {
    expect(runtime.device.device).toBe('cpu');
    expect(runtime.device.reason).toMatch(/asked for by name/);
  });

  it('runs a model and reads only the outputs asked for', async () => {
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    const x = hostTensor(new Float32Array([-1, 2, -3, 4, 5, -6, 7, -8]), [2, 4]);
    const { y } = await set.run('relu', { x }, { read: ['y'] });
    expect(y?.dims).toEqual([2, 4]);
    expect(Array.from(await y!.float32())).toEqual([0, 2, 0, 4, 5, 0, 7, 0]);
    await set.dispose();
  });

  it('keeps outputs in the worker and feeds them to the next run without a round trip', async () => {
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    const x = hostTensor(new Float32Array([-1, 2, -3, 4]), [1, 4]);
    const first = await set.run('relu', { x });
    expect(first.y?.handle).toBeTypeOf('number');
    expect(await runtime.stats()).toMatchObject({ tensors: 1, gpuTensors: 0 });
    const second = await set.run('relu', { x: first.y! }, { read: ['y'] });
    expect(Array.from(await second.y!.float32())).toEqual([0, 2, 0, 4]);
    expect(Array.from(await first.y!.float32())).toEqual([0, 2, 0, 4]);
    await first.y!.dispose();
    expect((await runtime.stats()).tensors).toBe(0);
    await expect(first.y!.data()).rejects.toBeInstanceOf(DisposedError);
    await set.dispose();
  });

  it('casts fp32 host data to a declared fp16 input and fp16 outputs back on read', async () => {
    const set = await runtime.loadSessions({ add: fixture('add-fp16') });
    expect(set.signatures.add.inputs.map((input) => input.type)).toEqual(['float16', 'float16']);
    const a = hostTensor(new Float32Array([0.5, 1.25, -2, 1000]), [1, 4]);
    const b = hostTensor(float32ToFloat16Bits(new Float32Array([0.25, 0.125, 0.5, 24])), [1, 4]);
    const { sum } = await set.run('add', { a, b });
    expect(sum?.type).toBe('float16');
    const bits = (await sum!.data()) as Uint16Array;
    expect(bits).toBeInstanceOf(Uint16Array);
    expect(Array.from(float16BitsToFloat32(bits))).toEqual([0.75, 1.375, -1.5, 1024]);
    expect(Array.from(await sum!.float32())).toEqual([0.75, 1.375, -1.5, 1024]);
    // Read with the run, fp16 comes back as fp32 values (or as raw bits when asked).
    const read = await set.run('add', { a, b }, { read: ['sum'] });
    expect(read.sum?.type).toBe('float32');
    expect(Array.from(await read.sum!.float32())).toEqual([0.75, 1.375, -1.5, 1024]);
    const raw = await set.run('add', { a, b }, { read: ['sum'], readAsFloat32: false });
    expect(raw.sum?.type).toBe('float16');
    expect(Array.from(await raw.sum!.float32())).toEqual([0.75, 1.375, -1.5, 1024]);
    await set.dispose();
  });

  it('casts int32 ids to a declared int64 input', async () => {
    const set = await runtime.loadSessions({ ids: fixture('ids-to-float') });
    const { doubled } = await set.run('ids', { ids: hostTensor(new Int32Array([1, 2, 49407]), [1, 3]) }, { read: ['doubled'] });
    expect(Array.from(await doubled!.float32())).toEqual([2, 4, 98814]);
    await set.dispose();
  });

  it('names the input, the expected and the actual type and dims on a mismatch', async () => {
    const set = await runtime.loadSessions({ relu: fixture('relu'), ids: fixture('ids-to-float') });
    const wrongWidth = set.run('relu', { x: hostTensor(new Float32Array(6), [2, 3]) });
    await expect(wrongWidth).rejects.toThrow(TensorInputError);
    await expect(wrongWidth).rejects.toThrow('model "relu", input "x": expected float32 [batch, 4], got float32 [2, 3]');
    await expect(set.run('relu', { x: hostTensor(new Float32Array(4), [4]) })).rejects.toThrow(/the rank differs/);
    await expect(set.run('relu', { x: hostTensor(new Int32Array(4), [1, 4]) })).rejects.toMatchObject({
      input: 'x',
      expected: 'float32 [batch, 4]',
      actual: 'int32 [1, 4]',
    });
    await expect(set.run('relu', {})).rejects.toMatchObject({ input: 'x', actual: 'no tensor' });
    await expect(
      set.run('relu', { x: hostTensor(new Float32Array(4), [1, 4]), extra: hostTensor(new Float32Array(1), [1]) }),
    ).rejects.toThrow(/one of the declared inputs \[x\]/);
    const ids = await set.run('ids', { ids: hostTensor(new Int32Array([1, 2, 3]), [1, 3]) });
    // A device-resident float tensor is never silently converted.
    await expect(set.run('ids', { ids: ids.doubled! })).rejects.toThrow(/expected int64 \[1, 3\], got float32 \[1, 3\] \(a model output kept on the device\)/);
    await set.dispose();
  });

  it('finds external weights (.onnx_data) beside the model, and names them when they are missing', async () => {
    const set = await runtime.loadSessions({ scaled: fixture('external-weights') });
    const { y } = await set.run('scaled', { x: hostTensor(new Float32Array([1, 1, 1, 1]), [1, 4]) }, { read: ['y'] });
    expect(Array.from(await y!.float32())).toEqual([1, 2, 3, 4]);
    await set.dispose();

    const folder = await mkdtemp(join(tmpdir(), 'external-weights-'));
    try {
      await copyFile(fixture('external-weights'), join(folder, 'model.onnx'));
      const error = await runtime.loadSessions({ scaled: join(folder, 'model.onnx') }).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ name: 'ModelFolderError', problem: 'missing-file', path: join(folder, 'model.onnx') });
      expect((error as Error).message).toMatch(/external weights could not be read.*external-weights\.onnx_data/);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('replaces a model of a set by another file or by bytes changed in memory (external weights still read beside its path), refusing one with other inputs or outputs', async () => {
    const set = await runtime.loadSessions({ scaled: fixture('external-weights') });
    const x = hostTensor(new Float32Array([1, 1, 1, 1]), [1, 4]);
    // From bytes, run from another working directory: the .onnx_data is found beside `path`.
    await set.replace('scaled', { path: fixture('external-weights'), bytes: await readFile(fixture('external-weights')) });
    expect(Array.from(await (await set.run('scaled', { x }, { read: ['y'] })).y!.float32())).toEqual([1, 2, 3, 4]);
    // Another network with the same inputs and outputs takes over (relu: y = max(x, 0)), then the first again.
    await set.replace('scaled', fixture('relu'));
    expect(Array.from(await (await set.run('scaled', { x: hostTensor(new Float32Array([-1, 2, -3, 4]), [1, 4]) }, { read: ['y'] })).y!.float32())).toEqual([0, 2, 0, 4]);
    const handed = new Uint8Array(await readFile(fixture('external-weights')));
    await set.replace('scaled', { path: fixture('external-weights'), bytes: handed });
    // Model bytes are handed to the worker, not copied (a UNet is gigabytes).
    expect(handed.byteLength).toBe(0);
    const refused = await set.replace('scaled', fixture('add-fp16')).catch((caught: unknown) => caught);
    expect(refused).toMatchObject({ name: 'InvalidArgumentError', field: 'scaled' });
    expect((refused as Error).message).toMatch(/same inputs and outputs as the loaded scaled/);
    // The old session is still there and runs.
    expect(Array.from(await (await set.run('scaled', { x }, { read: ['y'] })).y!.float32())).toEqual([1, 2, 3, 4]);
    expect((await runtime.stats()).sessions).toBe(1);
    await expect(set.replace('missing' as 'scaled', fixture('add-fp16'))).rejects.toMatchObject({ name: 'InvalidArgumentError', field: 'model' });
    await set.dispose();
  });

  it('lets runs in flight finish on the session a replace takes over from, and a dispose during a replace release everything', async () => {
    // Requests are not queued in the worker: a replace lands while runs use the old session, and a
    // dispose while the new session loads. Neither may fail a run or leave a session held.
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    const x = hostTensor(new Float32Array([-1, 2, -3, 4]), [1, 4]);
    for (let round = 0; round < 10; round += 1) {
      const replacing = set.replace('relu', fixture('relu'));
      const ran = await Promise.all([set.run('relu', { x }, { read: ['y'] }), set.run('relu', { x }, { read: ['y'] })]);
      for (const outputs of ran) expect(Array.from(await outputs.y!.float32())).toEqual([0, 2, 0, 4]);
      await replacing;
    }
    expect((await runtime.stats()).sessions).toBe(1);
    await set.dispose();

    for (let round = 0; round < 10; round += 1) {
      const racing = await runtime.loadSessions({ relu: fixture('relu') });
      const replacing = racing.replace('relu', fixture('relu')).then(
        () => 'replaced',
        (error: unknown) => (error as Error).name,
      );
      await racing.dispose();
      // Either the replace finished first, or it found its set gone and released what it loaded.
      expect(['replaced', 'DisposedError']).toContain(await replacing);
    }
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('raises typed errors that cross the worker boundary', async () => {
    const error = await runtime.loadSessions({ missing: '/nonexistent/model.onnx' }).catch((caught: unknown) => caught);
    expect(StreamDiffusionError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ name: 'ModelFolderError', path: '/nonexistent/model.onnx' });
  });

  it('releases every session and tensor on dispose, and the sessions of a load that failed part way', async () => {
    const before = await runtime.stats();
    // stats().sessions counts sessions until onnxruntime's release() resolves, not the worker's maps.
    expect(before.sessions).toBe(0);
    const set = await runtime.loadSessions({ relu: fixture('relu'), add: fixture('add-fp16') });
    await set.run('relu', { x: hostTensor(new Float32Array(4), [1, 4]) });
    await set.run('relu', { x: hostTensor(new Float32Array(8), [2, 4]) });
    const during = await runtime.stats();
    expect(during).toMatchObject({ sessions: before.sessions + 2, tensors: before.tensors + 2, gpuTensors: 0 });
    // Run times are counted per model name inside the worker.
    expect(during.runs.relu?.count).toBe((before.runs.relu?.count ?? 0) + 2);
    expect(during.runs.relu!.ms).toBeGreaterThan(before.runs.relu?.ms ?? 0);
    await set.dispose();
    expect(await runtime.stats()).toEqual({ ...before, runs: during.runs });
    await expect(set.run('relu', { x: hostTensor(new Float32Array(4), [1, 4]) })).rejects.toBeInstanceOf(DisposedError);
    // All or nothing: relu loaded before the missing model failed, and is released again.
    await expect(runtime.loadSessions({ relu: fixture('relu'), missing: '/nonexistent/model.onnx' })).rejects.toMatchObject({ name: 'ModelFolderError' });
    expect((await runtime.stats()).sessions).toBe(0);
  });

  it('combines tensors as Σ weight·tensor where they live, host and resident alike, in float32 and float16', async () => {
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    const a = hostTensor(new Float32Array([1, -2, 3.5, 0.1, 7, 8, 9, 10]), [2, 4]);
    const { y: b } = await set.run('relu', { x: hostTensor(new Float32Array([0.3, 2, -3, 4, 5, 6, 7, 8]), [2, 4]) });
    const before = await runtime.stats();
    const sum = await runtime.combine([
      { tensor: a, weight: 0.7 },
      { tensor: b!, weight: -0.4 },
    ]);
    expect(sum.handle).toBeTypeOf('number');
    expect((await runtime.stats()).tensors).toBe(before.tensors + 1);
    const bValues = [0.3, 2, 0, 4, 5, 6, 7, 8];
    // float32 steps: each product rounded, then the sum rounded.
    const expected = Array.from(a.data as Float32Array, (value, index) => Math.fround(Math.fround(value * Math.fround(0.7)) + Math.fround(bValues[index]! * Math.fround(-0.4))));
    expect(Array.from(await sum.float32())).toEqual(expected);
    await sum.dispose();
    expect((await runtime.stats()).tensors).toBe(before.tensors);

    const half = hostTensor(float32ToFloat16Bits(new Float32Array([1, 2, 4, -8])), [4]);
    const halfSum = await runtime.combine([{ tensor: half, weight: 0.5 }, { tensor: half, weight: 0.25 }], { read: true });
    expect(halfSum.type).toBe('float32');
    expect(Array.from(await halfSum.float32())).toEqual([0.75, 1.5, 3, -6]);

    await expect(runtime.combine([{ tensor: a, weight: 1 }, { tensor: hostTensor(new Float32Array(4), [1, 4]), weight: 1 }])).rejects.toThrow(
      /terms\[1\]\.tensor: expected float32 \[2, 4\] like terms\[0\], got "float32 \[1, 4\]"/,
    );
    // One weight per batch entry (axis 0): row 0 × 2, row 1 × 0.
    const perEntry = await runtime.combine([{ tensor: a, weight: [2, 0] }], { read: true });
    expect(Array.from(await perEntry.float32())).toEqual([2, -4, 7, Math.fround(0.1) * 2, 0, 0, 0, 0]);
    await expect(runtime.combine([{ tensor: a, weight: [1, 2, 3] }])).rejects.toThrow(/terms\[0\]\.weight: expected one number, or one per entry of axis 0 \(2\)/);
    await expect(runtime.combine([])).rejects.toThrow(/terms/);
    await expect(runtime.combine([{ tensor: a, weight: Number.NaN }])).rejects.toThrow(/terms\[0\]\.weight/);
    await b!.dispose();
    await set.dispose();
  });

  it('combines many groups of different shapes in one run (combineEach), each as combine would', async () => {
    const big = hostTensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const small = hostTensor(new Float32Array([10, 20]), [2, 1, 1]);
    const [first, second] = await runtime.combineEach(
      [
        [{ tensor: big, weight: 2 }, { tensor: big, weight: [1, -1] }],
        [{ tensor: small, weight: 0.5 }, { tensor: small, weight: [0, 1] }],
      ],
      { read: true },
    );
    expect(Array.from(await first!.float32())).toEqual([3, 6, 9, 4, 5, 6]);
    expect(Array.from(await second!.float32())).toEqual([5, 30]);
    for (const [group, expected] of [[0, [1, 2, 3, 4, 5, 6]], [1, [10, 20]]] as const) {
      const alone = await runtime.combine([{ tensor: group === 0 ? big : small, weight: 1 }], { read: true });
      expect(Array.from(await alone.float32())).toEqual(expected);
    }
    await expect(runtime.combineEach([[{ tensor: big, weight: 1 }], [{ tensor: small, weight: 1 }, { tensor: small, weight: 1 }]])).rejects.toThrow(
      /groups\[1\]\.terms: expected 1, as many as groups\[0\], got "2 tensors"/,
    );
    await expect(runtime.combineEach([[{ tensor: big, weight: 1 }], [{ tensor: small, weight: [1, 2, 3] }]])).rejects.toThrow(/groups\[1\]\.terms\[0\]\.weight/);
    await expect(runtime.combineEach([])).rejects.toThrow(/groups/);
  });

  it('holds host data in the worker to feed many runs, until disposed', async () => {
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    const before = await runtime.stats();
    const held = await runtime.hold(hostTensor(new Float32Array([-1, 2, -3, 4]), [1, 4]));
    expect(held.handle).toBeTypeOf('number');
    for (let run = 0; run < 2; run += 1) {
      const { y } = await set.run('relu', { x: held }, { read: ['y'] });
      expect(Array.from(await y!.float32())).toEqual([0, 2, 0, 4]);
    }
    await held.dispose();
    expect((await runtime.stats()).tensors).toBe(before.tensors);
    await set.dispose();

    // Held as float16: converted once in the worker, read back as the same (exactly representable) values.
    const half = await runtime.hold(hostTensor(new Float32Array([-1, 2.5, -3, 4]), [1, 4]), { as: 'float16' });
    expect(half.type).toBe('float16');
    expect(Array.from(await half.float32())).toEqual([-1, 2.5, -3, 4]);
    await half.dispose();
    await expect(runtime.hold(hostTensor(new Float32Array([1]), [1]), { as: 'int64' })).rejects.toThrow(/type/);
  });

  it('keeps the main thread responsive while a model runs', async () => {
    // One intra-op thread: a run then takes the same work on any machine (over 100 ms on the 2-core
    // test machine, well over 20 ms on the fastest core), which inference on the main thread would
    // spend with the timer blocked; and it leaves the main thread a core on small machines.
    const single = await createRuntime({ device: 'cpu', intraOpThreads: 1 });
    try {
      const set = await single.loadSessions({ slow: fixture('slow-matmul') });
      const n = 512;
      const x = hostTensor(Float32Array.from({ length: n * n }, (_, index) => ((index % 7) - 3) / (n * 4)), [n, n]);
      const ticks: number[] = [];
      const timer = setInterval(() => ticks.push(performance.now()), 5);
      const started = performance.now();
      let elapsed = 0;
      // Runs back to back until the work is long, however fast the machine.
      while (elapsed < 300) {
        await set.run('slow', { x }, { read: ['y'] });
        elapsed = performance.now() - started;
      }
      clearInterval(timer);
      // A free event loop fires the timer about elapsed / 5 times; one blocked by each run fires it
      // about once per run (onnxruntime runs in a setImmediate), far fewer with runs over 20 ms.
      expect(ticks.length).toBeGreaterThan(elapsed / 5 / 4);
    } finally {
      await single.dispose();
    }
  });
});

describe('runtime lifetime', () => {
  it('stops its worker on dispose and refuses further use', async () => {
    const runtime = await createRuntime({ device: 'cpu' });
    const set = await runtime.loadSessions({ relu: fixture('relu') });
    await runtime.dispose();
    expect(runtime.disposed).toBe(true);
    await expect(runtime.stats()).rejects.toBeInstanceOf(DisposedError);
    await expect(set.run('relu', { x: hostTensor(new Float32Array(4), [1, 4]) })).rejects.toBeInstanceOf(DisposedError);
  });

  it('auto picks a device and says why the others were passed over', async () => {
    const runtime = await createRuntime({ device: 'auto' });
    try {
      expect(runtime.device.considered.at(-1)?.device).toBe(runtime.device.device);
      expect(runtime.device.reason).toMatch(/^auto picked/);
    } finally {
      await runtime.dispose();
    }
  });

  it.runIf(process.env.STREAMDIFFUSION_GPU !== '1')('fails with a typed error naming what cuda lacks on a machine without its libraries', async () => {
    const error = await createRuntime({ device: 'cuda' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect(error).toMatchObject({ device: 'cuda', missing: 'provider-libraries' });
    expect((error as Error).message).toMatch(/libonnxruntime_providers_cuda\.so/);
    // The way out it names is onnxruntime-node's own installer, at a path that exists.
    const command = /`ONNXRUNTIME_NODE_INSTALL=cuda12 node (\S+)`/.exec((error as Error).message);
    expect(command, (error as Error).message).not.toBeNull();
    expect(existsSync(command![1]!)).toBe(true);
  });
});
