/**
 * Builds through trtexec, tested with a FAKE trtexec: a small node script this test writes into a
 * temporary folder and puts on PATH. It records the arguments it was given, prints a log in
 * trtexec's format and writes the file --saveEngine names. It proves only how arguments are built,
 * how the log becomes progress, and how the result reaches the store — NOT that real TensorRT
 * accepts these arguments or builds a working engine (no TensorRT exists on any machine we have).
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { streamDiffusionConfigSchema } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEngines, describeBuildReport, GpuNotFoundError } from './build-engines.js';
import { planEngines, type EnginePlan, type PlannedEngine } from './engine-plan.js';
import { createEngineStore } from './engine-store.js';
import {
  buildEngine,
  createProgressParser,
  EngineBuildError,
  findTrtexec,
  probeComputeCapability,
  probeTensorrtVersion,
  shapeSpec,
  TENSORRT_INSTALL_URL,
  tensorrtVersionFromBanner,
  trtexecArguments,
  TrtexecNotFoundError,
  type TrtexecProgress,
} from './trtexec.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const TINY = join(ROOT, 'fixtures/models/tiny-sd-turbo');

/** The log a TensorRT 10 trtexec prints for a verbose build (shortened). */
const LOG = [
  '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec',
  '[08/01/2025-10:00:00] [I] === Model Options ===',
  '[08/01/2025-10:00:00] [I] Start parsing network model.',
  '[08/01/2025-10:00:01] [I] Finished parsing network model. Parse time: 0.52',
  '[08/01/2025-10:00:01] [I] [TRT] Local timing cache in use. Profiling results in this builder pass will not be stored.',
  '[08/01/2025-10:00:02] [V] [TRT] =============== Computing costs for /conv_in/Conv',
  '[08/01/2025-10:00:03] [V] [TRT] =============== Computing costs for /up_blocks.0/resnets.0/conv1/Conv',
  '[08/01/2025-10:00:10] [I] [TRT] Engine generation completed in 9.1 seconds.',
  '[08/01/2025-10:00:10] [I] Engine built in 9.3 sec.',
  '[08/01/2025-10:00:10] [I] Skipped inference phase since --skipInference is added.',
  '&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec',
];

const FAKE = `#!/usr/bin/env node
const { appendFileSync, writeFileSync } = require('node:fs');
const args = process.argv.slice(2);
if (process.env.FAKE_TRTEXEC_CALLS) appendFileSync(process.env.FAKE_TRTEXEC_CALLS, JSON.stringify(args) + '\\n');
if (args[0] === '--help') { console.log('&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help'); process.exit(0); }
if (process.env.FAKE_TRTEXEC_FAIL) {
  console.log('[I] Start parsing network model.');
  console.error('[E] [TRT] ModelImporter.cpp:771: ERROR: unsupported operator');
  console.error('[E] Failed to parse onnx file');
  process.exit(1);
}
for (const line of ${JSON.stringify(LOG)}) console.log(line);
const save = args.find((arg) => arg.startsWith('--saveEngine='));
writeFileSync(save.slice('--saveEngine='.length), 'plan for ' + args.find((arg) => arg.startsWith('--onnx=')));
`;

describe('trtexec (with a fake trtexec; see the header)', () => {
  let folder: string;
  let bin: string;
  let vaeDecoder: PlannedEngine;
  let unet: PlannedEngine;
  let plan: EnginePlan;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'sd-trtexec-'));
    bin = join(folder, 'bin');
    await writeFile(join(folder, 'placeholder'), '');
    await mkdir(bin);
    await writeFile(join(bin, 'trtexec'), FAKE);
    await chmod(join(bin, 'trtexec'), 0o755);
    plan = await planEngines({ config: streamDiffusionConfigSchema.parse({ model_id: TINY, width: 512, height: 512, t_index_list: [20, 40], cfg_type: 'self', guidance_scale: 1.2 }), model: TINY });
    vaeDecoder = plan.engines.find((engine) => engine.kind === 'vae_decoder')!;
    unet = plan.engines.find((engine) => engine.kind === 'unet')!;
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('is found on PATH, or at the configured path; when absent the error points to the TensorRT install guide', async () => {
    expect(await findTrtexec({ environment: { PATH: ['/nonexistent', bin].join(delimiter) } })).toBe(join(bin, 'trtexec'));
    expect(await findTrtexec({ path: join(bin, 'trtexec') })).toBe(join(bin, 'trtexec'));
    const absent = await findTrtexec({ environment: { PATH: folder } }).catch((error: unknown) => error);
    expect(absent).toBeInstanceOf(TrtexecNotFoundError);
    expect((absent as Error).message).toContain(TENSORRT_INSTALL_URL);
    expect((absent as TrtexecNotFoundError).searched).toContain(join(folder, 'trtexec'));
    // A file that is not executable is not trtexec.
    await expect(findTrtexec({ path: join(folder, 'placeholder') })).rejects.toThrow(new RegExp(`${join(folder, 'placeholder')} is not an executable file.*${TENSORRT_INSTALL_URL.replaceAll('.', '\\.')}`));
  });

  it('gets the plan’s shape profiles, precision, a temporary engine path, the timing cache and build-only flags', () => {
    const args = trtexecArguments({ engine: unet, enginePath: '/store/.tmp/engine.plan', timingCache: '/store/timing.cache', refittable: true, workspaceMiB: 4096 });
    const sample = unet.inputs.find((input) => input.name === 'sample')!;
    expect(args).toEqual([
      `--onnx=${unet.onnx}`,
      '--saveEngine=/store/.tmp/engine.plan',
      `--minShapes=sample:${sample.min.join('x')},timestep:2,encoder_hidden_states:2x77x32`,
      `--optShapes=sample:${sample.opt.join('x')},timestep:2,encoder_hidden_states:2x77x32`,
      `--maxShapes=sample:${sample.max.join('x')},timestep:2,encoder_hidden_states:2x77x32`,
      '--fp16',
      '--timingCacheFile=/store/timing.cache',
      '--refit',
      '--memPoolSize=workspace:4096M',
      '--skipInference',
    ]);
    expect(sample.min.join('x')).toBe('2x4x32x32');
    const fp32 = trtexecArguments({ engine: { ...vaeDecoder, precision: 'fp32' }, enginePath: 'e', timingCache: 't', verbose: true });
    expect(fp32).not.toContain('--fp16');
    expect(fp32).not.toContain('--refit');
    expect(fp32.at(-1)).toBe('--verbose');
    expect(() => trtexecArguments({ engine: unet, enginePath: 'e', timingCache: 't', workspaceMiB: 0 })).toThrow(/^workspaceMiB: expected a positive integer/);
    expect(shapeSpec([{ name: 'input:0', min: [1], opt: [2], max: [3] }, { name: 'x', min: [1, 2], opt: [1, 2], max: [1, 2] }], 'opt')).toBe("'input:0':2,x:1x2");
  });

  it('reads phases and layer timing from trtexec’s log, each phase once', () => {
    const parse = createProgressParser();
    const events = LOG.map(parse).filter((event) => event !== undefined);
    expect(events.map((event) => (event.phase === 'layer' ? `layer ${event.layersTimed} ${event.layer}` : event.phase))).toEqual([
      'parsing',
      'building',
      'layer 1 /conv_in/Conv',
      'layer 2 /up_blocks.0/resnets.0/conv1/Conv',
      'built',
      'saved',
    ]);
    expect(events.find((event) => event.phase === 'built')).toMatchObject({ seconds: 9.1 });
    expect(parse('[08/01/2025-10:00:10] [E] Error[4]: out of memory')).toMatchObject({ phase: 'error' });
    expect(tensorrtVersionFromBanner('&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec')).toBe('10.3.0');
    expect(tensorrtVersionFromBanner('&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec')).toBe('8.6.1');
    expect(tensorrtVersionFromBanner('[I] TensorRT version: 10.13.2')).toBe('10.13.2');
  });

  it('asks trtexec for the TensorRT version and nvidia-smi for the compute capability', async () => {
    expect(await probeTensorrtVersion(join(bin, 'trtexec'))).toBe('10.3.0');
    const smi = join(bin, 'nvidia-smi');
    await writeFile(smi, '#!/bin/sh\necho "9.0"\n');
    await chmod(smi, 0o755);
    expect(await probeComputeCapability({ nvidiaSmi: smi })).toBe('9.0');
    expect(await probeComputeCapability({ nvidiaSmi: join(folder, 'no-such-smi') })).toBeUndefined();
  });

  it('builds into a temporary path, moves the engine into the store, reports progress, and does not build a stored engine again', async () => {
    const store = createEngineStore({ folder: join(folder, 'store') });
    const calls = join(folder, 'calls.jsonl');
    process.env.FAKE_TRTEXEC_CALLS = calls;
    try {
      const progress: TrtexecProgress[] = [];
      const environment = { computeCapability: '9.0', tensorrtVersion: '10.3.0' };
      const built = await buildEngine({ engine: vaeDecoder, store, trtexec: join(bin, 'trtexec'), environment, onProgress: (event) => progress.push(event) });
      expect(built.built).toBe(true);
      expect(await readFile(built.enginePath, 'utf8')).toBe(`plan for --onnx=${vaeDecoder.onnx}`);
      expect(progress.map((event) => event.phase)).toEqual(['parsing', 'building', 'layer', 'layer', 'built', 'saved']);
      const [args] = (await readFile(calls, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as string[]);
      const saved = args!.find((arg) => arg.startsWith('--saveEngine='))!.slice('--saveEngine='.length);
      expect(saved).not.toBe(built.enginePath);
      expect(dirname(dirname(saved))).toBe(store.folder);
      expect(args).toContain(`--timingCacheFile=${store.timingCachePath(environment)}`);
      expect(built.meta).toMatchObject({ name: 'vae_decoder', kind: 'vae_decoder', tensorrtVersion: '10.3.0', computeCapability: '9.0', inputs: vaeDecoder.inputs });

      const again = await buildEngine({ engine: vaeDecoder, store, trtexec: join(bin, 'trtexec'), environment });
      expect(again).toMatchObject({ built: false, enginePath: built.enginePath });
      expect((await readFile(calls, 'utf8')).trim().split('\n')).toHaveLength(1);
    } finally {
      delete process.env.FAKE_TRTEXEC_CALLS;
    }
  });

  it('fails with trtexec’s exit code and the tail of its stderr, leaving nothing in the store', async () => {
    const store = createEngineStore({ folder: join(folder, 'failing-store') });
    process.env.FAKE_TRTEXEC_FAIL = '1';
    try {
      const error = await buildEngine({ engine: unet, store, trtexec: join(bin, 'trtexec'), environment: { computeCapability: '9.0', tensorrtVersion: '10.3.0' } }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(EngineBuildError);
      expect(error).toMatchObject({ engine: 'unet', exitCode: 1 });
      expect((error as EngineBuildError).outputTail).toBe('[E] [TRT] ModelImporter.cpp:771: ERROR: unsupported operator\n[E] Failed to parse onnx file');
      expect((error as Error).message).toMatch(/building the unet engine failed: trtexec exited with code 1.*\n.*unsupported operator/);
      expect(await readdir(store.folder)).toEqual([]);
    } finally {
      delete process.env.FAKE_TRTEXEC_FAIL;
    }
  });

  it('buildEngines builds every planned engine with its EPContext wrapper, reports progress lines, and finds them stored the next time', async () => {
    const smi = join(bin, 'nvidia-smi');
    await writeFile(smi, '#!/bin/sh\necho "9.0"\n');
    await chmod(smi, 0o755);
    const store = createEngineStore({ folder: join(folder, 'pipeline-store') });
    const lines: string[] = [];
    const first = await buildEngines({ plan, store, trtexec: join(bin, 'trtexec'), nvidiaSmi: smi, refittable: true, onProgress: (line) => lines.push(line) });
    expect(first.dryRun).toBe(false);
    if (first.dryRun) return;
    expect(first.environment).toEqual({ computeCapability: '9.0', tensorrtVersion: '10.3.0' });
    expect(first.engines.map((engine) => [engine.name, engine.built])).toEqual(plan.engines.map((engine) => [engine.name, true]));
    for (const engine of first.engines) {
      expect(await readFile(engine.enginePath, 'utf8')).toMatch(/^plan for --onnx=/);
      // The wrapper is an ONNX file naming the engine beside it.
      expect((await readFile(engine.wrapper)).includes(Buffer.from('engine.plan'))).toBe(true);
    }
    expect(lines).toContain('unet: timing layer 1 (/conv_in/Conv)');
    expect(lines).toContain('unet: built in 9.1 s');
    expect(lines.filter((line) => line.endsWith(': saved'))).toHaveLength(plan.engines.length);

    const again = await buildEngines({ plan, store, trtexec: join(bin, 'trtexec'), nvidiaSmi: smi, refittable: true });
    expect(again.engines.map((engine) => 'built' in engine && engine.built)).toEqual(plan.engines.map(() => false));
    expect(describeBuildReport(again).at(-1)).toBe(`0 engine(s) built, ${plan.engines.length} already stored in ${store.folder}`);
    // A dry run on this machine knows the keys, and that they are stored; a non-refittable build would be another key.
    const dry = await buildEngines({ plan, store, trtexec: join(bin, 'trtexec'), nvidiaSmi: smi, refittable: true, dryRun: true });
    expect(dry.engines.map((engine) => ('stored' in engine ? [engine.key, engine.stored] : []))).toEqual(first.engines.map((engine) => [engine.key, true]));
    const other = await buildEngines({ plan, store, trtexec: join(bin, 'trtexec'), nvidiaSmi: smi, dryRun: true });
    expect(other.engines.map((engine) => 'stored' in engine && engine.stored)).toEqual(plan.engines.map(() => false));
  });

  it('buildEngines without a GPU to ask fails naming nvidia-smi; without trtexec it fails pointing to TensorRT, unless it is a dry run', async () => {
    const store = createEngineStore({ folder: join(folder, 'no-gpu-store') });
    await expect(buildEngines({ plan, store, trtexec: join(bin, 'trtexec'), nvidiaSmi: join(folder, 'no-such-smi') })).rejects.toBeInstanceOf(GpuNotFoundError);
    await expect(buildEngines({ plan, store, trtexec: join(folder, 'no-trtexec') })).rejects.toThrow(TENSORRT_INSTALL_URL);
    const dry = await buildEngines({ plan, store, trtexec: join(folder, 'no-trtexec'), dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, trtexec: null, environment: null });
    expect(describeBuildReport(dry)[1]).toMatch(/^trtexec: not found/);
    expect(dry.engines.map((engine) => ('key' in engine ? engine.key : 'built'))).toEqual(plan.engines.map(() => null));
    expect(await readdir(store.folder).catch(() => [])).toEqual([]);
  });

  it('buildEngines with a LoRA set: refittable plans end the UNet with its refit command; otherwise the report says the LoRAs are not in the engines', async () => {
    const store = createEngineStore({ folder: join(folder, 'lora-store') });
    const loras = [{ path: join(ROOT, 'fixtures/loras/kohya.safetensors'), scale: 0.5 }];
    const refit = await buildEngines({ plan, store, trtexec: join(folder, 'no-trtexec'), dryRun: true, refittable: true, loras, python: '/opt/trt/bin/python3' });
    expect(refit.loras).toEqual({ count: 1, refit: true });
    expect(refit.engines.map((engine) => ('refitCommand' in engine && engine.refitCommand !== undefined ? engine.name : null))).toEqual(plan.engines.map((engine) => (engine.kind === 'unet' ? 'unet' : null)));
    const lines = describeBuildReport(refit);
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}then refit with the LoRA set: \/opt\/trt\/bin\/python3 \S*python\/refit_engine\.py '--engine=/));
    expect(lines.some((line) => line.startsWith('note:'))).toBe(false);
    const plain = await buildEngines({ plan, store, trtexec: join(folder, 'no-trtexec'), dryRun: true, loras });
    expect(describeBuildReport(plain).at(-1)).toBe('note: the engines hold the model’s own weights; the 1 LoRA(s) are not in them (build refittable engines to refit them in)');
  });
});
