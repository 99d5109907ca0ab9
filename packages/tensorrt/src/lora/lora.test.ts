/**
 * LoRA merge and hot LoRA on the CPU, against diffusers: fixtures/loras holds two random LoRAs for
 * tiny-sd-turbo (kohya names with alphas, including a 3×3 conv; diffusers/PEFT names without), and
 * fixtures/goldens/lora.json.gz what PyTorch gives with them fused the way diffusers reads them
 * (`python3 -m streamdiffusion_export lora-goldens`, see fixtures/README.md). Our merge into the ONNX
 * weights must reproduce the UNet and text encoder outputs, for each set and scale, as the set
 * changes on one loaded model (hot: no re-export, only changed networks reloaded).
 */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { createRuntime, createStreamDiffusion, float16BitsToFloat32, hostTensor, loadModel, type LoadedModel, type RgbImage, type Runtime } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, encodeModel, layerWeights, readModel } from '../onnx/onnx-model.js';
import { createHotLora, createLoraMerger, loraSetHash, type HotLora } from './hot-lora.js';

/** How far two merges may be apart: fp32 rounding, or one fp16 step (2⁻¹⁰ relative). */
const tensorTypeStep = (model: string): number => (model.includes('fp16') ? 2 ** -10 : 1e-6);
import { matchLora } from './lora-keys.js';
import { LoraFileError, parseSafetensors, readSafetensors } from './safetensors.js';

const fixture = (path: string): string => fileURLToPath(new URL(`../../../../fixtures/${path}`, import.meta.url));
const KOHYA = fixture('loras/kohya.safetensors');
const PEFT = fixture('loras/peft.safetensors');
const FILES: Record<string, string> = { 'kohya.safetensors': KOHYA, 'peft.safetensors': PEFT };

interface EncodedTensor {
  readonly dtype: 'float32' | 'int64';
  readonly dims: number[];
  readonly data: string;
}
const decode = (tensor: EncodedTensor): Float32Array | BigInt64Array => {
  const bytes = Buffer.from(tensor.data, 'base64');
  const copy = new Uint8Array(bytes).buffer;
  return tensor.dtype === 'int64' ? new BigInt64Array(copy) : new Float32Array(copy);
};
interface LoraGoldens {
  readonly text_tokens: number;
  readonly inputs: { readonly input_ids: EncodedTensor };
  readonly cases: readonly { readonly name: string; readonly loras: readonly { readonly file: string; readonly scale: number }[]; readonly unet: EncodedTensor; readonly text_encoder: EncodedTensor }[];
}
/** A gzip-compressed JSON file of fixtures/goldens/. */
const readGoldenJson = async (name: string): Promise<unknown> => JSON.parse(gunzipSync(await readFile(fixture(`goldens/${name}`))).toString('utf8'));
const goldens = (await readGoldenJson('lora.json.gz')) as LoraGoldens;
const unetGolden = ((await readGoldenJson('tiny-sd-turbo.json.gz')) as { models: { unet: { inputs: Record<string, EncodedTensor> } } }).models.unet.inputs;

/** A one-layer LoRA file of zeros (`up` [out, r], `down` [r, in]), for files a model must refuse. */
async function writeZeroLora(path: string, module: string, up: readonly [number, number], down: readonly [number, number]): Promise<void> {
  const [upBytes, downBytes] = [up[0] * up[1] * 4, down[0] * down[1] * 4];
  const header = JSON.stringify({
    [`${module}.lora_down.weight`]: { dtype: 'F32', shape: down, data_offsets: [0, downBytes] },
    [`${module}.lora_up.weight`]: { dtype: 'F32', shape: up, data_offsets: [downBytes, downBytes + upBytes] },
  });
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path, Buffer.concat([length, Buffer.from(header), Buffer.alloc(downBytes + upBytes)]));
}

const maxDifference = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  return a.reduce((most, value, index) => Math.max(most, Math.abs(value - b[index]!)), 0);
};

/** The UNet's output and the text encoder's first tokens, as the goldens hold them. */
async function outputs(model: LoadedModel): Promise<{ unet: Float32Array; text: Float32Array }> {
  const unetInputs = Object.fromEntries(Object.entries(unetGolden).map(([name, tensor]) => [name, hostTensor(decode(tensor) as Float32Array, tensor.dims)]));
  const { out_sample: sample } = await model.sessions.run('unet', unetInputs, { read: ['out_sample'] });
  const ids = goldens.inputs.input_ids;
  const { last_hidden_state: hidden } = await model.sessions.run('text_encoder', { input_ids: hostTensor(Int32Array.from(decode(ids) as BigInt64Array, Number), ids.dims) }, { read: ['last_hidden_state'] });
  const width = hidden!.dims[2]!;
  return { unet: await sample!.float32(), text: (await hidden!.float32()).slice(0, goldens.text_tokens * width) };
}

describe('LoRA files', () => {
  it('reads both naming families and finds every layer they change in the tiny model (kohya: attention, a 3×3 conv, text encoder; PEFT)', async () => {
    const layers = {
      unet: layerWeights(await readModel(fixture('models/tiny-sd-turbo/unet/model.onnx')), 'unet'),
      text_encoder: layerWeights(await readModel(fixture('models/tiny-sd-turbo/text_encoder/model.onnx')), 'text_encoder'),
    };
    const kohya = matchLora(await readSafetensors(KOHYA), layers);
    expect(kohya.unmatched).toEqual([]);
    expect(kohya.layers.filter((layer) => layer.component === 'unet')).toHaveLength(25);
    expect(kohya.layers.filter((layer) => layer.component === 'text_encoder').map((layer) => layer.module).sort()).toEqual([
      'encoder.layers.0.mlp.fc1',
      'encoder.layers.0.self_attn.q_proj',
      'encoder.layers.0.self_attn.v_proj',
    ]);
    expect(kohya.layers.find((layer) => layer.module === 'down_blocks.1.resnets.0.conv1')).toMatchObject({ alpha: 1, down: { shape: [2, 16, 3, 3] }, up: { shape: [16, 2, 1, 1] } });
    const peft = matchLora(await readSafetensors(PEFT), layers);
    expect(peft.unmatched).toEqual([]);
    expect(peft.layers.map((layer) => `${layer.component}:${layer.module}:${layer.alpha}`).sort()).toEqual([
      'text_encoder:encoder.layers.1.self_attn.k_proj:2',
      'unet:mid_block.attentions.0.transformer_blocks.0.attn1.to_q:2',
      'unet:up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k:2',
      'unet:up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v:2',
      'unet:up_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj:2',
    ]);
  });

  it('refuses a file that is not safetensors, or cut short, naming the file and what is wrong', async () => {
    const bytes = await readFile(KOHYA);
    expect(() => parseSafetensors(bytes.subarray(0, bytes.length - 10), 'cut.safetensors')).toThrow(/cut\.safetensors: tensor .* \(the file is cut short or corrupt\)/);
    expect(() => parseSafetensors(new TextEncoder().encode('{"not": "safetensors"}'), 'x.json')).toThrow(LoraFileError);
    await expect(readSafetensors(fixture('loras/missing.safetensors'))).rejects.toThrow(/missing\.safetensors: cannot read it \(ENOENT\)/);
  });

  it('hashes a set by content and scale (for engine keys)', async () => {
    const one = await loraSetHash([{ path: KOHYA }]);
    expect(one).toMatch(/^[0-9a-f]{64}$/);
    expect(await loraSetHash([{ path: KOHYA, scale: 1 }])).toBe(one);
    expect(await loraSetHash([{ path: KOHYA, scale: 0.5 }])).not.toBe(one);
    expect(await loraSetHash([{ path: KOHYA }, { path: PEFT }])).not.toBe(one);
  });

  it('hashes the files’ bytes (streamed, not decoded), again when a file changes on disk', async () => {
    const sha256 = (bytes: string | Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
    expect(await loraSetHash([{ path: KOHYA, scale: 0.5 }, { path: PEFT }])).toBe(sha256(`${sha256(await readFile(KOHYA))}:0.5;${sha256(await readFile(PEFT))}:1;`));
    const folder = await mkdtemp(join(tmpdir(), 'sd-lora-hash-'));
    try {
      const path = join(folder, 'lora.safetensors');
      await cp(KOHYA, path);
      const before = await loraSetHash([{ path }]);
      await writeFile(path, Buffer.concat([await readFile(KOHYA), Buffer.from(' ')]));
      expect(await loraSetHash([{ path }])).not.toBe(before);
      await expect(loraSetHash([{ path: join(folder, 'missing.safetensors') }])).rejects.toThrow(/missing\.safetensors: cannot read it \(ENOENT\)/);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe('hot LoRA on one loaded model (CPU)', () => {
  let runtime: Runtime;
  let model: LoadedModel;
  let lora: HotLora;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: fixture('models/tiny-sd-turbo') });
    lora = await createHotLora(model);
  });
  afterAll(async () => {
    await model?.dispose();
    await runtime?.dispose();
  });

  it('gives diffusers’ fused outputs for every set, applied one after another, and takes them all out exactly', async () => {
    const original = await outputs(model);
    for (const golden of goldens.cases) {
      const report = await lora.apply(golden.loras.map(({ file, scale }) => ({ path: FILES[file]!, scale })));
      expect(report.unmatched).toEqual([]);
      const { unet, text } = await outputs(model);
      expect(maxDifference(unet, decode(golden.unet) as Float32Array), `${golden.name}: unet`).toBeLessThan(1e-5);
      expect(maxDifference(text, decode(golden.text_encoder) as Float32Array), `${golden.name}: text encoder`).toBeLessThan(1e-5);
      if (golden.loras.length > 0) expect(maxDifference(unet, original.unet), `${golden.name} changes the UNet`).toBeGreaterThan(1e-2);
    }
    await lora.apply([]);
    const restored = await outputs(model);
    expect(restored.unet).toEqual(original.unet);
    expect(restored.text).toEqual(original.text);
    expect(lora.active).toEqual([]);
  });

  it('reloads only the networks whose merged weights changed, and nothing for the same set', async () => {
    expect((await lora.apply([{ path: KOHYA, scale: 0.7 }])).reloaded).toEqual(['unet', 'text_encoder']);
    expect((await lora.apply([{ path: KOHYA, scale: 0.7 }])).reloaded).toEqual([]);
    // Scale 0 leaves a file out: the same weights as without it.
    expect((await lora.apply([{ path: KOHYA, scale: 0.7 }, { path: PEFT, scale: 0 }])).reloaded).toEqual([]);
    expect((await lora.apply([{ path: KOHYA, scale: 0.3 }])).reloaded).toEqual(['unet', 'text_encoder']);
    const report = await lora.apply([]);
    expect(report.reloaded).toEqual(['unet', 'text_encoder']);
    expect(Object.keys(report.timings)).toEqual(['read', 'merge', 'encode', 'reload', 'total']);
    expect((await runtime.stats()).sessions).toBe(4);
  });

  it('refuses a bad set with an error naming the field or the file, and keeps the weights it had', async () => {
    await lora.apply([{ path: PEFT }]);
    const before = await outputs(model);
    await expect(lora.apply([{ path: KOHYA, scale: 11 }])).rejects.toMatchObject({ name: 'InvalidArgumentError', field: 'loras.0.scale' });
    await expect(lora.apply([{ path: fixture('models/tiny-sd-turbo/unet/config.json') }])).rejects.toThrow(LoraFileError);
    const folder = await mkdtemp(join(tmpdir(), 'lora-'));
    try {
      const stranger = join(folder, 'other-model.safetensors');
      // A LoRA whose names match no layer of this model (another family's names).
      await writeZeroLora(stranger, 'lora_transformer_single_blocks_0_attn_to_q', [2, 1], [1, 2]);
      await expect(lora.apply([{ path: PEFT }, { path: stranger }])).rejects.toThrow(/other-model\.safetensors: no layer of this model matches its tensors/);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
    const after = await outputs(model);
    expect(after.unet).toEqual(before.unet);
    expect(lora.active).toEqual([{ path: PEFT, scale: 1 }]);
    await lora.apply([]);
  });

  it('makes a running pipeline encode its prompts again when the text encoder changed', async () => {
    const frame: RgbImage = { data: new Uint8Array(64 * 64 * 3).map((_, index) => (index * 11) % 256), width: 64, height: 64, channels: 3 };
    const options = { model, width: 64, height: 64, tIndexList: [20], prompt: 'a lighthouse' } as const;
    const before = await createStreamDiffusion(options);
    try {
      await lora.apply([{ path: KOHYA }]);
      const after = await createStreamDiffusion(options);
      try {
        // Both see their first frame now, on the merged weights: the older one with prompts encoded again.
        const older = (await before.img2img(frame)).images[0]!;
        const newer = (await after.img2img(frame)).images[0]!;
        expect(older.data).toEqual(newer.data);
      } finally {
        await after.dispose();
      }
    } finally {
      await before.dispose();
      await lora.apply([]);
    }
  });
});

describe('hot LoRA on a model whose weights are in an external data file', () => {
  it('reads the weights from it, and gives the same outputs as on the model with inline weights', async () => {
    // tiny-sd-turbo with every UNet weight of more than 1 kB moved to unet/model.onnx_data.
    const folder = await mkdtemp(join(tmpdir(), 'lora-external-'));
    const runtime = await createRuntime({ device: 'cpu' });
    try {
      await cp(fixture('models/tiny-sd-turbo'), folder, { recursive: true });
      const model = await readModel(join(folder, 'unet', 'model.onnx'));
      const chunks: Uint8Array[] = [];
      let offset = 0;
      for (const tensor of model.graph!.initializer!) {
        if (tensor.rawData === undefined || tensor.rawData.byteLength <= 1024) continue;
        const length = tensor.rawData.byteLength;
        chunks.push(new Uint8Array(tensor.rawData));
        Object.assign(tensor, { rawData: new Uint8Array(0), dataLocation: 1, externalData: [{ key: 'location', value: 'model.onnx_data' }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }] });
        offset += length;
      }
      await writeFile(join(folder, 'unet', 'model.onnx_data'), Buffer.concat(chunks));
      await writeFile(join(folder, 'unet', 'model.onnx'), encodeModel(model));
      const external = await loadModel({ runtime, folder });
      const inline = await loadModel({ runtime, folder: fixture('models/tiny-sd-turbo') });
      const set = [{ path: KOHYA, scale: 0.5 }, { path: PEFT }];
      await (await createHotLora(external)).apply(set);
      await (await createHotLora(inline)).apply(set);
      const [a, b] = [await outputs(external), await outputs(inline)];
      expect(maxDifference(a.unet, b.unet)).toBe(0);
      expect(maxDifference(a.text, b.text)).toBe(0);
    } finally {
      await runtime.dispose();
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe('hot LoRA on an fp16 model (tiny-sd15-fp16: the same layer names, conv proj_in)', () => {
  it('merges in float32 and stores float16, and takes the LoRA out exactly', async () => {
    const runtime = await createRuntime({ device: 'cpu' });
    const model = await loadModel({ runtime, folder: fixture('models/tiny-sd15-fp16') });
    try {
      const unetInputs = Object.fromEntries(Object.entries(unetGolden).map(([name, tensor]) => [name, hostTensor(decode(tensor) as Float32Array, tensor.dims)]));
      const run = async (): Promise<Float32Array> => await (await model.sessions.run('unet', unetInputs, { read: ['out_sample'] })).out_sample!.float32();
      const original = await run();
      const lora = await createHotLora(model);
      const report = await lora.apply([{ path: KOHYA }, { path: PEFT }]);
      expect(report.layers).toEqual([
        { path: KOHYA, unet: 25, text_encoder: 3 },
        { path: PEFT, unet: 4, text_encoder: 1 },
      ]);
      expect(maxDifference(await run(), original)).toBeGreaterThan(1e-2);
      await lora.apply([]);
      expect(await run()).toEqual(original);
    } finally {
      await model.dispose();
      await runtime.dispose();
    }
  });
});

describe('decoded LoRA files', () => {
  it('are kept per merger: one merger’s merge does not drop the files another one merged', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'sd-lora-files-'));
    try {
      const path = join(folder, 'kohya.safetensors');
      await cp(KOHYA, path);
      const time = new Date('2026-01-01T00:00:00Z');
      await utimes(path, time, time);
      const unet = fixture('models/tiny-sd-turbo/unet/model.onnx');
      const [first, second] = await Promise.all([createLoraMerger({ unet }), createLoraMerger({ unet })]);
      await first.merge([{ path }]);
      await second.merge([{ path: PEFT }]);
      // Zeros of the same size and time in its place: only a merger that reads the file again sees them.
      await writeFile(path, Buffer.alloc((await readFile(path)).byteLength));
      await utimes(path, time, time);
      expect((await first.merge([{ path }])).sources).toEqual({});
      await expect(second.merge([{ path }])).rejects.toThrow(LoraFileError);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe('where the merge runs', () => {
  it('gives the same weights in JavaScript (no runtime: the TensorRT refit’s merge) as on onnxruntime (hot LoRA’s), fp32 and fp16', async () => {
    const runtime = await createRuntime({ device: 'cpu' });
    try {
      for (const [model, set] of [
        ['models/tiny-sd-turbo', [{ path: KOHYA, scale: 0.7 }, { path: PEFT, scale: -1.5 }]],
        ['models/tiny-sd15-fp16', [{ path: KOHYA, scale: 2 }]],
      ] as const) {
        const files = { unet: fixture(`${model}/unet/model.onnx`), text_encoder: fixture(`${model}/text_encoder/model.onnx`) };
        const [inJs, onOrt] = await Promise.all([createLoraMerger(files), createLoraMerger(files, { runtime })]);
        const [a, b] = [await inJs.merge(set), await onOrt.merge(set)];
        for (const component of ['unet', 'text_encoder'] as const) {
          const [modelA, modelB] = [decodeModel(a.sources[component]!.bytes!), decodeModel(b.sources[component]!.bytes!)];
          const original = decodeModel(await readFile(files[component]));
          let changed = 0;
          let most = 0;
          for (const [index, tensor] of modelA.graph!.initializer!.entries()) {
            const [x, y, before] = [tensor.rawData, modelB.graph!.initializer![index]!.rawData, original.graph!.initializer![index]!.rawData];
            if (x === undefined || y === undefined || before === undefined || Buffer.compare(Buffer.from(x), Buffer.from(before)) === 0) continue;
            changed += 1;
            const values = (bytes: Uint8Array): Float32Array => (tensor.dataType === 10 ? float16BitsToFloat32(new Uint16Array(new Uint8Array(bytes).buffer)) : new Float32Array(new Uint8Array(bytes).buffer));
            const [p, q] = [values(x), values(y)];
            for (let i = 0; i < p.length; i += 1) most = Math.max(most, Math.abs(p[i]! - q[i]!) / Math.max(1, Math.abs(p[i]!)));
          }
          expect(changed, `${model} ${component}: layers changed`).toBeGreaterThan(0);
          // Sums in another order: fp32 rounding apart; in fp16 at most one step of the stored value.
          expect(most, `${model} ${component}`).toBeLessThanOrEqual(tensorTypeStep(model));
        }
      }
    } finally {
      await runtime.dispose();
    }
  });
});

describe('hot LoRA on models it cannot change', () => {
  it('refuses a model exported without layer names, and a LoRA whose shapes do not fit, naming the layer', async () => {
    const runtime = await createRuntime({ device: 'cpu' });
    try {
      const compact = await loadModel({ runtime, folder: fixture('models/micro-sd-turbo-ipadapter') });
      await expect(createHotLora(compact)).rejects.toThrow(/whose nodes carry the exporter's layer names/);
      await compact.dispose();
      // A LoRA made for wider layers than this model's.
      const model = await loadModel({ runtime, folder: fixture('models/tiny-sd-turbo') });
      const folder = await mkdtemp(join(tmpdir(), 'lora-'));
      try {
        const wide = join(folder, 'wide.safetensors');
        const name = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
        await writeZeroLora(wide, name, [320, 2], [2, 320]);
        const lora = await createHotLora(model);
        await expect(lora.apply([{ path: wide }])).rejects.toThrow(
          /wide\.safetensors: unet layer down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q: its LoRA has down \[2, 320\] and up \[320, 2\], which do not make the model's weight \[16, 16\] \(a LoRA for another model\?\)/,
        );
      } finally {
        await rm(folder, { recursive: true, force: true });
        await model.dispose();
      }
    } finally {
      await runtime.dispose();
    }
  });
});
