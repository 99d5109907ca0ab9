import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hostTensor, InvalidArgumentError } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, encodeModel, readModel, toNumber, type OnnxModelProto } from '../onnx/onnx-model.js';
import { EP_CONTEXT_SOURCE, epContextModel, loadEngineSession, writeEpContextModel } from './ep-context.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const VAE_DECODER = join(ROOT, 'fixtures/models/tiny-sd-turbo/vae_decoder/model.onnx');
const UNET = join(ROOT, 'fixtures/models/tiny-sd-turbo/unet/model.onnx');
/** A Python with the onnx package (the export tool's venv); CI machines have none. */
const PYTHON = '/work/sdx-venv/bin/python';
const pythonOnnx = existsSync(PYTHON) && (await promisify(execFile)(PYTHON, ['-c', 'import onnx']).then(() => true, () => false));

const text = (bytes: Uint8Array | undefined): string => new TextDecoder().decode(bytes);
const valueInfo = (model: OnnxModelProto, which: 'input' | 'output') =>
  (model.graph?.[which] ?? []).map((value) => ({
    name: value.name,
    elemType: value.type?.tensorType?.elemType,
    dims: (value.type?.tensorType?.shape?.dim ?? []).map((dim) => (dim.dimParam ? dim.dimParam : toNumber(dim.dimValue))),
  }));

/** Runs onnx.checker.check_model (full check) on a file; resolves with the exit code and stderr. */
async function onnxChecker(path: string): Promise<{ code: number; stderr: string }> {
  return promisify(execFile)(PYTHON, ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path]).then(
    () => ({ code: 0, stderr: '' }),
    (error: { code?: number; stderr?: string }) => ({ code: error.code ?? 1, stderr: error.stderr ?? '' }),
  );
}

describe('EPContext wrapper models', () => {
  let folder: string;
  let wrapper: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'sd-epcontext-'));
    wrapper = join(folder, 'key', 'model_ctx.onnx');
    await writeEpContextModel({ onnx: VAE_DECODER, engine: join(folder, 'key', 'engine.plan'), output: wrapper, computeCapability: '9.0' });
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('hold one EPContext node (com.microsoft) pointing at the engine beside them, with the original’s inputs and outputs', async () => {
    const written = decodeModel(await readFile(wrapper));
    const original = await readModel(VAE_DECODER);
    const nodes = written.graph?.node ?? [];
    expect(nodes).toHaveLength(1);
    const [node] = nodes;
    expect(node).toMatchObject({ opType: 'EPContext', domain: 'com.microsoft', input: ['latent_sample'], output: ['sample'] });
    const attributes = Object.fromEntries((node!.attribute ?? []).map((attribute) => [attribute.name, attribute.s === undefined || attribute.s.length === 0 ? toNumber(attribute.i) : text(attribute.s)]));
    expect(attributes).toMatchObject({ main_context: 1, embed_mode: 0, ep_cache_context: 'engine.plan', source: EP_CONTEXT_SOURCE, hardware_architecture: '90', onnx_model_filename: 'model.onnx' });
    expect(valueInfo(written, 'input')).toEqual(valueInfo(original, 'input'));
    expect(valueInfo(written, 'output')).toEqual(valueInfo(original, 'output'));
    expect(valueInfo(written, 'input')[0]?.dims).toEqual(['batch', 4, 'height', 'width']);
    expect((written.opsetImport ?? []).map((entry) => [entry.domain ?? '', toNumber(entry.version)])).toEqual([
      ['', 17],
      ['com.microsoft', 1],
    ]);
    expect(written.graph?.initializer ?? []).toEqual([]);
  });

  it('name every unknown dim (dim_param), keep the UNet’s three inputs, and refuse an engine outside the wrapper’s folder', async () => {
    const unet = await readModel(UNET);
    unet.graph!.input![0]!.type!.tensorType!.shape!.dim![0] = {};
    const wrapped = epContextModel(unet, { engineRelativePath: 'engine.plan' });
    expect(valueInfo(wrapped, 'input').map((input) => [input.name, input.dims])).toEqual([
      ['sample', ['sample_dim0', 4, 'height', 'width']],
      ['timestep', ['batch']],
      ['encoder_hidden_states', ['batch', 'sequence', 32]],
    ]);
    expect(() => epContextModel(unet, { engineRelativePath: '../other/engine.plan' })).toThrow(InvalidArgumentError);
    expect(() => epContextModel(unet, { engineRelativePath: '/engines/engine.plan' })).toThrow(/^engineRelativePath: expected a path inside the wrapper’s folder/);
  });

  it.skipIf(!pythonOnnx)(`pass the onnx package’s checker, which does reject a broken wrapper${pythonOnnx ? '' : ` (skipped: no ${PYTHON} with the onnx package on this machine)`}`, async () => {
    expect(await onnxChecker(wrapper)).toEqual({ code: 0, stderr: '' });
    // The same wrapper with an output no node makes: the checker must say no (so the pass above means something).
    const broken = decodeModel(await readFile(wrapper));
    broken.graph!.node![0]!.output = ['not_sample'];
    const brokenPath = join(folder, 'broken.onnx');
    await writeFile(brokenPath, encodeModel(broken));
    const result = await onnxChecker(brokenPath);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/sample/);
  });

  it('load on TensorRT when it can run, else fall back to the plain model on the asked device with a warning saying why, and release what they took', async () => {
    const warnings: string[] = [];
    const loaded = await loadEngineSession({ name: 'vae_decoder', wrapper, onnx: VAE_DECODER, fallbackDevice: 'cpu', onWarning: (message) => warnings.push(message) });
    // No machine we have can run TensorRT: this always takes the fallback here.
    expect(loaded.usedEngine).toBe(false);
    expect(loaded.device).toBe('cpu');
    expect(warnings).toEqual([loaded.warning]);
    expect(loaded.warning).toMatch(new RegExp(`^vae_decoder: the TensorRT engine \\(${wrapper.replaceAll('/', '\\/')}\\) is not used: device "tensorrt" cannot run: .+; running .*model\\.onnx on cpu instead$`));
    const { sample } = await loaded.sessions.run('vae_decoder', { latent_sample: hostTensor(new Float32Array(4 * 8 * 8), [1, 4, 8, 8]) }, { read: ['sample'] });
    expect(sample?.dims.slice(0, 2)).toEqual([1, 3]);
    await loaded.dispose();
    expect(loaded.runtime.disposed).toBe(true);
  });
});
