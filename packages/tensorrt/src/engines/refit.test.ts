/**
 * Refits, run through the real `python/refit_engine.py` with python3, but with a FAKE `tensorrt`
 * Python package that this test writes and puts on PYTHONPATH: it "refits" by writing the base
 * engine's bytes and the sha256 of the ONNX file it was handed. It proves how the merged UNet
 * reaches the refitter (its bytes equal the LoRA merge, its external data beside it), how the
 * script's events become progress and errors, and how the refitted engine is keyed and stored —
 * NOT that real TensorRT refits an engine (no TensorRT exists on any machine we have). One test
 * runs the real script on the real python3 without the fake: it must say TensorRT is missing.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRuntime, InvalidArgumentError, streamDiffusionConfigSchema } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoraMerger, loraSetHash } from '../lora/hot-lora.js';
import { encodeModel, readModel } from '../onnx/onnx-model.js';
import { buildEngines } from './build-engines.js';
import { planEngines } from './engine-plan.js';
import { createEngineStore, type EngineStore, type StoredEngine } from './engine-store.js';
import { EP_CONTEXT_FILE, writeEpContextModel } from './ep-context.js';
import { EngineRefitError, parseRefitLine, refitArguments, refitEngine, refitPython, TensorrtPythonNotFoundError } from './refit.js';

const fixture = (path: string): string => fileURLToPath(new URL(`../../../../fixtures/${path}`, import.meta.url));
const KOHYA = fixture('loras/kohya.safetensors');
const PEFT = fixture('loras/peft.safetensors');

const FAKE_TENSORRT = `
import hashlib, json, os
__version__ = "10.3.0-fake"
def _record(call):
    if os.environ.get("FAKE_TRT_CALLS"):
        with open(os.environ["FAKE_TRT_CALLS"], "a") as file:
            file.write(json.dumps(call) + "\\n")
class Logger:
    WARNING = 2
    def __init__(self, level):
        pass
class _Engine:
    def __init__(self, data):
        self.data = data
        self.refit_from = None
    def serialize(self):
        # Like IHostMemory: a buffer, not bytes.
        return memoryview(self.data + b" refitted with " + self.refit_from.encode())
class Runtime:
    def __init__(self, logger):
        pass
    def deserialize_cuda_engine(self, data):
        return _Engine(data)
class Refitter:
    def __init__(self, engine, logger):
        self.engine = engine
    def get_all_weights(self):
        return ["w0", "w1", "w2"]
    def refit_cuda_engine(self):
        return self.engine.refit_from is not None
    def get_missing_weights(self):
        return []
class OnnxParserRefitter:
    def __init__(self, refitter, logger):
        self.refitter = refitter
        self.num_errors = 0
    def refit_from_file(self, path):
        beside = sorted(os.listdir(os.path.dirname(path)))
        _record({"onnx": path, "beside": beside})
        if os.environ.get("FAKE_TRT_REJECT"):
            self.num_errors = 1
            return False
        with open(path, "rb") as file:
            self.refitter.engine.refit_from = hashlib.sha256(file.read()).hexdigest()
        return True
    def get_error(self, index):
        return "weights /unet/conv_in/Conv: count differs (320 vs 640)"
`;

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('refitting a refittable UNet engine with a LoRA set (fake TensorRT Python package; see the header)', () => {
  let folder: string;
  let store: EngineStore;
  let base: StoredEngine;
  let calls: string;
  const saved = { PYTHONPATH: process.env.PYTHONPATH };
  /** A stored engine of the tiny UNet, as build-engines would leave it (its bytes: a marker). */
  const storeEngine = async (onnx: string, options: { refittable: boolean; kind?: 'unet' | 'vae_decoder'; precision?: 'fp16' | 'fp32' }): Promise<StoredEngine> => {
    // meta.onnx's size and time must be the file's, or the engine is stale.
    const info = await stat(onnx);
    const kind = options.kind ?? 'unet';
    return await store.ensure({
      meta: { onnxSha256: sha256(await readFile(onnx)), loraHash: null, precision: options.precision ?? 'fp16', inputs: [], computeCapability: '9.0', tensorrtVersion: '10.3.0', refittable: options.refittable, name: kind, kind, onnx: { path: onnx, bytes: info.size, mtimeMs: info.mtimeMs } },
      build: async (enginePath) => await writeFile(enginePath, 'base engine'),
    });
  };
  const callsMade = async (): Promise<{ onnx: string; beside: string[] }[]> =>
    (await readFile(calls, 'utf8').catch(() => ''))
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { onnx: string; beside: string[] });

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'sd-refit-'));
    await mkdir(join(folder, 'fake-python', 'tensorrt'), { recursive: true });
    await writeFile(join(folder, 'fake-python', 'tensorrt', '__init__.py'), FAKE_TENSORRT);
    await cp(fixture('models/tiny-sd-turbo'), join(folder, 'model'), { recursive: true });
    store = createEngineStore({ folder: join(folder, 'store') });
    base = await storeEngine(join(folder, 'model', 'unet', 'model.onnx'), { refittable: true });
    calls = join(folder, 'calls.jsonl');
    process.env.PYTHONPATH = join(folder, 'fake-python');
    process.env.FAKE_TRT_CALLS = calls;
  });
  afterAll(async () => {
    if (saved.PYTHONPATH === undefined) delete process.env.PYTHONPATH;
    else process.env.PYTHONPATH = saved.PYTHONPATH;
    delete process.env.FAKE_TRT_CALLS;
    await rm(folder, { recursive: true, force: true });
  });

  it('hands the refitter the UNet with the set merged in, stores the result under the set’s key with a wrapper, and refits a set only once', async () => {
    const loras = [{ path: KOHYA, scale: 0.8 }];
    const lines: string[] = [];
    const refitted = await refitEngine({ engine: base, loras, store, onProgress: (line) => lines.push(line) });
    expect(refitted.built).toBe(true);
    expect(refitted.key).not.toBe(base.key);
    expect(refitted.meta).toMatchObject({ loraHash: await loraSetHash(loras), refittable: true, kind: 'unet', onnxSha256: base.meta!.onnxSha256 });
    // The ONNX file the refitter read is exactly the merge's bytes.
    const merged = (await (await createLoraMerger({ unet: base.meta!.onnx.path })).merge(loras)).sources.unet!.bytes!;
    expect(await readFile(refitted.enginePath, 'utf8')).toBe(`base engine refitted with ${sha256(merged)}`);
    expect(await readFile(join(refitted.folder, 'model_ctx.onnx'))).toBeTruthy();
    expect(lines).toEqual(expect.arrayContaining(['unet: engine loaded (3 refittable weights) in 0 s', expect.stringMatching(/^unet: refitted in [\d.]+ s$/), expect.stringMatching(/^unet: saved/)]));
    // The merged model's folder was temporary.
    expect((await readdir(store.folder)).filter((name) => name.startsWith('.'))).toEqual([]);

    const again = await refitEngine({ engine: base, loras, store });
    expect(again).toMatchObject({ built: false, key: refitted.key });
    const rescaled = await refitEngine({ engine: base, loras: [{ path: KOHYA, scale: 0.4 }, { path: PEFT, scale: 1 }], store });
    expect(rescaled.built).toBe(true);
    expect(rescaled.key).not.toBe(refitted.key);
    expect(await callsMade()).toHaveLength(2);
    expect(await refitEngine({ engine: base, loras: [], store })).toMatchObject({ built: false, key: base.key });
  });

  it('copies the base engine’s EPContext wrapper (the one a build writes), which is the one the refitted engine needs', async () => {
    const own = createEngineStore({ folder: join(folder, 'store-with-wrappers') });
    const onnx = join(folder, 'model', 'unet', 'model.onnx');
    const info = await stat(onnx);
    const wrapped = await own.ensure({
      meta: { onnxSha256: sha256(await readFile(onnx)), loraHash: null, precision: 'fp16', inputs: [], computeCapability: '9.0', tensorrtVersion: '10.3.0', refittable: true, name: 'unet', kind: 'unet', onnx: { path: onnx, bytes: info.size, mtimeMs: info.mtimeMs } },
      build: async (enginePath) => {
        await writeFile(enginePath, 'base engine');
        // As buildEngine leaves it.
        await writeEpContextModel({ onnx, engine: enginePath, output: join(dirname(enginePath), EP_CONTEXT_FILE), computeCapability: '9.0' });
      },
    });
    const refitted = await refitEngine({ engine: wrapped, loras: [{ path: KOHYA, scale: 0.7 }], store: own });
    expect(refitted.built).toBe(true);
    const copied = await readFile(join(refitted.folder, EP_CONTEXT_FILE));
    expect(copied).toEqual(await readFile(join(wrapped.folder, EP_CONTEXT_FILE)));
    // Byte for byte what writing the refitted engine's own wrapper gives.
    const fresh = join(folder, 'fresh-wrapper', EP_CONTEXT_FILE);
    await writeEpContextModel({ onnx, engine: join(dirname(fresh), 'engine.plan'), output: fresh, computeCapability: '9.0' });
    expect(copied).toEqual(await readFile(fresh));
  });

  it('merges on the runtime it is given (onnxruntime’s CPU kernels: other bytes than the JavaScript merge’s), and buildEngines refits that way', async () => {
    const loras = [{ path: PEFT, scale: 0.6 }];
    const unet = base.meta!.onnx.path;
    const runtime = await createRuntime({ device: 'cpu' });
    let onRuntime: Uint8Array;
    try {
      onRuntime = (await (await createLoraMerger({ unet }, { runtime })).merge(loras)).sources.unet!.bytes!;
      const own = createEngineStore({ folder: join(folder, 'store-runtime') });
      const refitted = await refitEngine({ engine: base, loras, store: own, runtime });
      expect(await readFile(refitted.enginePath, 'utf8')).toBe(`base engine refitted with ${sha256(onRuntime)}`);
    } finally {
      await runtime.dispose();
    }
    const inJavascript = (await (await createLoraMerger({ unet })).merge(loras)).sources.unet!.bytes!;
    expect(sha256(inJavascript)).not.toBe(sha256(onRuntime));

    // buildEngines with a LoRA set and refittable engines, through a fake trtexec and nvidia-smi.
    const bin = join(folder, 'bin');
    await mkdir(bin, { recursive: true });
    const fakeTrtexec = [
      '#!/usr/bin/env node',
      'const args = process.argv.slice(2);',
      "if (args[0] === '--help') { console.log('&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help'); process.exit(0); }",
      "require('node:fs').writeFileSync(args.find((arg) => arg.startsWith('--saveEngine=')).slice('--saveEngine='.length), 'base engine');",
    ];
    await writeFile(join(bin, 'trtexec'), `${fakeTrtexec.join('\n')}\n`);
    await writeFile(join(bin, 'nvidia-smi'), '#!/bin/sh\necho "9.0"\n');
    await chmod(join(bin, 'trtexec'), 0o755);
    await chmod(join(bin, 'nvidia-smi'), 0o755);
    const model = join(folder, 'model');
    const plan = await planEngines({ config: streamDiffusionConfigSchema.parse({ model_id: model, width: 512, height: 512, t_index_list: [20, 40] }), model });
    const report = await buildEngines({ plan, store: createEngineStore({ folder: join(folder, 'store-build') }), trtexec: join(bin, 'trtexec'), nvidiaSmi: join(bin, 'nvidia-smi'), refittable: true, loras });
    if (report.dryRun) throw new Error('not a dry run');
    const refitted = report.engines.find((engine) => engine.refitted !== undefined)!.refitted!;
    expect(await readFile(refitted.enginePath, 'utf8')).toBe(`base engine refitted with ${sha256(onRuntime)}`);
  });

  it('gives the refitter the external data files beside the merged model', async () => {
    // The tiny UNet with its big weights moved to model.onnx_data, like real exports over 2 GB.
    const external = join(folder, 'external');
    await cp(join(folder, 'model'), external, { recursive: true });
    const path = join(external, 'unet', 'model.onnx');
    const model = await readModel(path);
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (const tensor of model.graph!.initializer!) {
      if (tensor.rawData === undefined || tensor.rawData.byteLength <= 1024) continue;
      chunks.push(new Uint8Array(tensor.rawData));
      Object.assign(tensor, { rawData: new Uint8Array(0), dataLocation: 1, externalData: [{ key: 'location', value: 'model.onnx_data' }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(tensor.rawData.byteLength) }] });
      offset += chunks.at(-1)!.byteLength;
    }
    await writeFile(join(external, 'unet', 'model.onnx_data'), Buffer.concat(chunks));
    await writeFile(path, encodeModel(model));
    await refitEngine({ engine: await storeEngine(path, { refittable: true }), loras: [{ path: KOHYA, scale: 1 }], store });
    const last = (await callsMade()).at(-1)!;
    expect(last.onnx).not.toBe(path);
    expect(last.beside).toEqual(['config.json', 'model.onnx', 'model.onnx_data']);
  });

  it('refuses engines it cannot refit, naming why', async () => {
    const fixed = await storeEngine(join(folder, 'model', 'vae_decoder', 'model.onnx'), { refittable: true, kind: 'vae_decoder' });
    await expect(refitEngine({ engine: fixed, loras: [{ path: KOHYA, scale: 1 }], store })).rejects.toThrow(/^engine: expected the UNet engine/);
    const plain = await storeEngine(join(folder, 'model', 'unet', 'model.onnx'), { refittable: false });
    const error = await refitEngine({ engine: plain, loras: [{ path: KOHYA, scale: 1 }], store }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(/a refittable engine \(build-engines --refit/);
    const refitted = await refitEngine({ engine: base, loras: [{ path: KOHYA, scale: 0.8 }], store });
    await expect(refitEngine({ engine: refitted, loras: [{ path: PEFT, scale: 1 }], store })).rejects.toThrow(/refit its base engine/);
    // An engine whose ONNX file changed since it was built.
    await cp(join(folder, 'model', 'unet'), join(folder, 'changing'), { recursive: true });
    // (fp32: another key than the base engine's, whose ONNX file has the same content.)
    const changing = join(folder, 'changing', 'model.onnx');
    const changed = await storeEngine(changing, { refittable: true, precision: 'fp32' });
    expect(changed.meta!.onnx.path).toBe(changing);
    await writeFile(changing, Buffer.concat([await readFile(changing), Buffer.alloc(1)]));
    const [stale] = (await store.list()).filter((engine) => engine.key === changed.key);
    await expect(refitEngine({ engine: stale!, loras: [{ path: PEFT, scale: 1 }], store })).rejects.toThrow(/an engine that still fits/);
  });

  it('turns the refitter’s refusal into an EngineRefitError with its message, storing nothing', async () => {
    process.env.FAKE_TRT_REJECT = '1';
    try {
      const before = await store.list();
      const error = await refitEngine({ engine: base, loras: [{ path: PEFT, scale: 0.3 }], store }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(EngineRefitError);
      expect((error as Error).message).toMatch(/^refitting the unet engine failed: .*model\.onnx: its weights do not fit the engine: weights \/unet\/conv_in\/Conv: count differs/);
      expect((await store.list()).map((engine) => engine.key)).toEqual(before.map((engine) => engine.key));
    } finally {
      delete process.env.FAKE_TRT_REJECT;
    }
  });

  it('says TensorRT’s Python package is missing: a Python that cannot be run, and (real script, real python3) one without it', async () => {
    await expect(refitEngine({ engine: base, loras: [{ path: PEFT, scale: 0.5 }], store, python: join(folder, 'no-python') })).rejects.toThrow(/refitting needs TensorRT's Python package .*no-python: it cannot be run \(ENOENT\)/);
    const hasTensorrt = (() => {
      try {
        execFileSync('python3', ['-c', 'import tensorrt'], { env: { ...process.env, PYTHONPATH: '' }, stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    if (hasTensorrt) return; // a machine with TensorRT: the missing case cannot happen there
    process.env.PYTHONPATH = '';
    try {
      const error = await refitEngine({ engine: base, loras: [{ path: PEFT, scale: 0.5 }], store }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(TensorrtPythonNotFoundError);
      expect((error as Error).message).toMatch(/No module named 'tensorrt'.*https:\/\/docs\.nvidia\.com\/deeplearning\/tensorrt\//);
    } finally {
      process.env.PYTHONPATH = join(folder, 'fake-python');
    }
  });

  it('runs the Python it is given, else $STREAMDIFFUSION_PYTHON, else python3', () => {
    const saved = process.env.STREAMDIFFUSION_PYTHON;
    try {
      process.env.STREAMDIFFUSION_PYTHON = '/opt/trt/bin/python3';
      expect(refitPython('/usr/bin/python3.11')).toBe('/usr/bin/python3.11');
      expect(refitPython(undefined)).toBe('/opt/trt/bin/python3');
      delete process.env.STREAMDIFFUSION_PYTHON;
      expect(refitPython(undefined)).toBe('python3');
    } finally {
      if (saved === undefined) delete process.env.STREAMDIFFUSION_PYTHON;
      else process.env.STREAMDIFFUSION_PYTHON = saved;
    }
  });

  it('builds the script’s command line and reads its events', () => {
    expect(refitArguments({ engine: '/s/a/engine.plan', onnx: '/tmp/m/model.onnx', output: '/s/.tmp/engine.plan', script: 'refit_engine.py' })).toEqual(['refit_engine.py', '--engine=/s/a/engine.plan', '--onnx=/tmp/m/model.onnx', '--output=/s/.tmp/engine.plan']);
    expect(refitArguments({ engine: 'e', onnx: 'o', output: 'p' })[0]).toMatch(/python\/refit_engine\.py$/);
    expect(parseRefitLine('{"event": "refitted", "seconds": 1.5}')).toEqual({ event: 'refitted', seconds: 1.5 });
    expect(parseRefitLine('[TRT] [W] some warning')).toBeUndefined();
    expect(parseRefitLine('{"event": "other"}')).toBeUndefined();
  });
});
