// The IP-Adapter's models and the wrapper's chain against PyTorch: transformers' CLIPImageProcessor
// and CLIPVisionModelWithProjection, diffusers' projections and UNet2DConditionModel with the
// adapter loaded by _load_ip_adapter_weights (`python -m streamdiffusion_export ip-adapter-goldens`,
// fixtures/README.md).
import { join } from 'node:path';
import { createRuntime, hostTensor, type HostTensor, type Runtime, type SessionSet } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, MICRO_IP_CONTROLNET_UNET, MICRO_IP_MODEL, MICRO_PLUS, readIpAdapterGoldens, STYLE_IMAGE } from '../test-support/fixtures.js';
import { findAdapterFiles } from './adapter-folder.js';
import { clipPixelValues, readClipPreprocessing } from './clip-image.js';
import { createImageEmbedder, type ImageEmbedder } from './image-embedder.js';

interface Tensor {
  readonly dtype: 'float32';
  readonly dims: number[];
  readonly data: string;
}
interface ModelCase {
  readonly inputs: Record<string, Tensor>;
  readonly outputs: Record<string, Tensor>;
  readonly tolerance: { readonly abs: number };
  readonly onnxruntime_max_abs_diff: Record<string, number>;
}
interface Goldens {
  readonly preprocess: { readonly outputs: Record<'style' | 'example', Tensor> };
  readonly image_encoder: { readonly cases: Record<'images' | 'zeros', ModelCase> };
  readonly projection_regular: { readonly cases: Record<'images' | 'uncond', ModelCase> };
  readonly projection_plus: { readonly cases: Record<'images' | 'uncond', ModelCase> };
  readonly unet: {
    readonly inputs: Record<'sample' | 'timestep' | 'text_embeddings', Tensor>;
    readonly cases: Record<string, ModelCase & { readonly model: string; readonly images?: string[]; readonly image_weights?: Record<string, number> }>;
  };
}

const values = (tensor: Tensor): Float32Array => {
  const bytes = Buffer.from(tensor.data, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
};
const host = (tensor: Tensor): HostTensor => hostTensor(values(tensor), tensor.dims);
const maxDifference = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  return a.reduce((max, value, index) => Math.max(max, Math.abs(value - b[index]!)), 0);
};

/** encoder_hidden_states as the UNet takes them: per batch entry, the 77 text tokens then the image tokens. */
function hiddenStates(text: Tensor, tokens: Tensor): HostTensor {
  const [batch, textCount, width] = text.dims as [number, number, number];
  const imageCount = tokens.dims[1]!;
  const [textValues, tokenValues] = [values(text), values(tokens)];
  const out = new Float32Array(batch * (textCount + imageCount) * width);
  for (let entry = 0; entry < batch; entry += 1) {
    const base = entry * (textCount + imageCount) * width;
    out.set(textValues.subarray(entry * textCount * width, (entry + 1) * textCount * width), base);
    out.set(tokenValues.subarray(entry * imageCount * width, (entry + 1) * imageCount * width), base + textCount * width);
  }
  return hostTensor(out, [batch, textCount + imageCount, width]);
}

describe('IP-Adapter goldens (PyTorch, micro fixtures, CPU)', () => {
  let goldens: Goldens;
  let runtime: Runtime;
  let sessions: SessionSet<'encoder' | 'regular' | 'plus' | 'unet' | 'unetControlNet'>;
  beforeAll(async () => {
    goldens = (await readIpAdapterGoldens()) as Goldens;
    runtime = await createRuntime({ device: 'cpu' });
    sessions = await runtime.loadSessions({
      encoder: join(MICRO_IP_MODEL, 'image_encoder', 'model.onnx'),
      regular: join(MICRO_IP_MODEL, 'image_projection', 'model.onnx'),
      plus: join(MICRO_PLUS, 'image_projection', 'model.onnx'),
      unet: join(MICRO_IP_MODEL, 'unet', 'model.onnx'),
      unetControlNet: join(MICRO_IP_CONTROLNET_UNET, 'model.onnx'),
    });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  const check = async (model: 'encoder' | 'regular' | 'plus' | 'unet' | 'unetControlNet', golden: ModelCase, inputs?: Record<string, HostTensor>) => {
    const fed = inputs ?? Object.fromEntries(Object.entries(golden.inputs).map(([name, tensor]) => [name, host(tensor)]));
    const names = sessions.signatures[model].outputs.map((output) => output.name).filter((name) => name in golden.outputs);
    expect(names.length, `${model}: outputs with goldens`).toBeGreaterThan(0);
    const outputs = await sessions.run(model, fed, { read: names });
    for (const name of names) {
      const expected = golden.outputs[name]!;
      expect(maxDifference(await outputs[name]!.float32(), values(expected)), `${model} ${name}`).toBeLessThanOrEqual(golden.tolerance.abs);
    }
  };

  it('runs the CLIP image encoder as transformers does (image embeddings and penultimate hidden states)', async () => {
    await check('encoder', goldens.image_encoder.cases.images);
    await check('encoder', goldens.image_encoder.cases.zeros);
  });

  it('runs both projections as diffusers does (regular: 4 tokens; plus: 16 through the resampler), for images and for the negative side', async () => {
    for (const name of ['images', 'uncond'] as const) {
      await check('regular', goldens.projection_regular.cases[name]);
      await check('plus', goldens.projection_plus.cases[name]);
    }
  });

  it("runs the UNet's IP-Adapter attention as diffusers' IPAdapterAttnProcessor2_0 does, for every case", async () => {
    const { sample, timestep, text_embeddings: text } = goldens.unet.inputs;
    for (const [name, golden] of Object.entries(goldens.unet.cases)) {
      const { image_tokens: tokens, ...rest } = golden.inputs;
      const inputs: Record<string, HostTensor> = {
        sample: host(sample),
        timestep: host(timestep),
        encoder_hidden_states: hiddenStates(text, tokens!),
        ...Object.fromEntries(Object.entries(rest).map(([input, tensor]) => [input, host(tensor)])),
      };
      await check(name === 'controlnet' ? 'unetControlNet' : 'unet', golden, inputs);
    }
    // Scale 0 is the plain UNet (the same checkpoint without an adapter), and rows per entry really differ.
    const plain = goldens.unet.cases.regular_scale0!.outputs;
    expect(maxDifference(values(plain.out_sample!), values(plain.plain_out_sample!))).toBeLessThan(1e-5);
    expect(maxDifference(values(goldens.unet.cases.regular_scale1!.outputs.out_sample!), values(plain.out_sample!))).toBeGreaterThan(1e-2);
  });

  describe('the wrapper’s chain: style image → pixels → embedding → tokens', () => {
    let regular: ImageEmbedder;
    let plus: ImageEmbedder;
    beforeAll(async () => {
      regular = await createImageEmbedder(runtime, await findAdapterFiles(MICRO_IP_MODEL));
      plus = await createImageEmbedder(runtime, await findAdapterFiles(MICRO_PLUS, join(MICRO_IP_MODEL, 'image_encoder')));
    });
    afterAll(async () => {
      await Promise.all([regular.dispose(), plus.dispose()]);
    });

    it("preprocesses style images as CLIPImageProcessor does (sharp's bicubic against PIL's: close, not equal)", async () => {
      const preprocessing = await readClipPreprocessing(join(MICRO_IP_MODEL, 'feature_extractor', 'preprocessor_config.json'));
      expect(preprocessing.crop).toEqual([32, 32]);
      // style.png is 48×40: resized to 38×32, cropped to 32×32. example.png is 128×128 RGBA: alpha dropped, resized to 32×32.
      for (const [name, file] of [
        ['style', STYLE_IMAGE],
        ['example', EXAMPLE_IMAGE],
      ] as const) {
        const ours = await clipPixelValues(file, preprocessing);
        const reference = values(goldens.preprocess.outputs[name]);
        const mean = ours.reduce((sum, value, index) => sum + Math.abs(value - reference[index]!), 0) / ours.length;
        expect(mean, `${name}: mean abs difference (normalised units; 1/255 of a pixel is 0.015)`).toBeLessThan(PREPROCESS_MEAN_TOLERANCE);
        expect(maxDifference(ours, reference), `${name}: max abs difference`).toBeLessThan(PREPROCESS_MAX_TOLERANCE);
      }
    });

    it("makes diffusers' negative image tokens: the projection of zeros (regular), of a zero image's hidden states (plus)", () => {
      expect(maxDifference(regular.unconditional, values(goldens.projection_regular.cases.uncond.outputs.image_tokens!))).toBeLessThan(1e-5);
      expect(maxDifference(plus.unconditional, values(goldens.projection_plus.cases.uncond.outputs.image_tokens!))).toBeLessThan(1e-5);
    });

    it('gives the tokens PyTorch gives for one image and for a weighted blend, within the preprocessing difference', async () => {
      const width = 32;
      const style = values(goldens.projection_regular.cases.images.outputs.image_tokens!).subarray(0, 4 * width);
      expect(maxDifference(await regular.tokensFor([{ image: STYLE_IMAGE, weight: 1 }], 'style_image'), style)).toBeLessThan(TOKEN_TOLERANCE);
      const plusStyle = values(goldens.projection_plus.cases.images.outputs.image_tokens!).subarray(0, 16 * width);
      expect(maxDifference(await plus.tokensFor([{ image: STYLE_IMAGE, weight: 1 }], 'style_image'), plusStyle)).toBeLessThan(TOKEN_TOLERANCE);
      const weighted = goldens.unet.cases.weighted_images!;
      expect(weighted.image_weights).toEqual({ style: 0.75, example: 0.25 });
      const blended = await regular.tokensFor(
        [
          { image: STYLE_IMAGE, weight: 0.75 },
          { image: EXAMPLE_IMAGE, weight: 0.25 },
        ],
        'style_images',
      );
      expect(maxDifference(blended, values(weighted.inputs.image_tokens!).subarray(0, 4 * width))).toBeLessThan(TOKEN_TOLERANCE);
    });
  });
});

// Measured on the CPU machine: pixels mean 0.0015 / max 0.015 (style.png: one 8-bit level), mean 0.0057 / max
// 0.060 (example.png, a 4× downscale: four levels); tokens 0.0024 (regular), 0.0063 (plus), 0.0027 (blend). A
// wrong crop offset, channel order or resize rule moves them by tenths.
const PREPROCESS_MEAN_TOLERANCE = 0.01;
const PREPROCESS_MAX_TOLERANCE = 0.1;
const TOKEN_TOLERANCE = 0.02;
