import {
  createRuntime,
  hostTensor,
  loadModel,
  type LoadedModel,
  type RgbImage,
  type Runtime,
  type RuntimeTensor,
  type WrapperFrameV1,
} from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MICRO_CANNY, MICRO_MODEL, MICRO_SIX, readControlNetGoldens } from '../test-support/fixtures.js';
import { createControlNet, RESIDUAL_INPUTS } from './controlnet-wrapper.js';

// Goldens recorded from diffusers' ControlNetModel / MultiControlNetModel / UNet2DConditionModel in
// PyTorch fp32 (`python -m streamdiffusion_export controlnet-goldens`, fixtures/README.md).
const MODEL = MICRO_MODEL;
const CANNY = MICRO_CANNY;
const SIX = MICRO_SIX;

interface GoldenTensor {
  readonly dims: number[];
  readonly data: string;
}
interface Goldens {
  readonly tolerance: { readonly abs: number };
  readonly cases: {
    readonly batch1: {
      readonly inputs: Record<'sample' | 'timestep' | 'encoder_hidden_states', GoldenTensor>;
      readonly unet: Record<string, { readonly out_sample: GoldenTensor }>;
      readonly controlnet_residuals: Record<string, Record<string, GoldenTensor>>;
    };
  };
}

const values = (tensor: GoldenTensor): Float32Array => {
  const bytes = Buffer.from(tensor.data, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
};

/** The goldens' control image j (its formula), channels `from`…`from + 2` as RGB pixels. */
function controlPixels(j: number, from: number): RgbImage {
  const data = new Uint8Array(64 * 64 * 3);
  for (let channel = 0; channel < 3; channel += 1) {
    for (let pixel = 0; pixel < 64 * 64; pixel += 1) {
      data[pixel * 3 + channel] = Math.imul((from + channel) * 64 * 64 + pixel + 65536 * j, 2654435761) >>> 24;
    }
  }
  return { data, width: 64, height: 64, channels: 3 };
}

/** Pixels as the pipeline hands frames to wrappers: planar `[1, 3, H, W]` in [-1, 1]. */
function asFrame(image: RgbImage): Float32Array {
  const out = new Float32Array(3 * 64 * 64);
  for (let channel = 0; channel < 3; channel += 1) {
    for (let pixel = 0; pixel < 64 * 64; pixel += 1) out[channel * 64 * 64 + pixel] = image.data[pixel * 3 + channel]! / 127.5 - 1;
  }
  return out;
}

describe('the ControlNet wrapper against diffusers in PyTorch (CPU, fp32)', () => {
  let runtime: Runtime;
  let model: LoadedModel;
  let goldens: Goldens;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    model = await loadModel({ runtime, folder: MODEL });
    goldens = (await readControlNetGoldens()) as Goldens;
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  /** One UNet run on the golden inputs with what `entries` contribute; its output. */
  const unetWith = async (entries: Parameters<typeof createControlNet>[0]): Promise<Float32Array> => {
    const { inputs } = goldens.cases.batch1;
    const wrapper = createControlNet(entries);
    await wrapper.attach({ model, runtime, width: 64, height: 64, frameBufferSize: 1, latentShape: [4, 8, 8] });
    try {
      const frame: WrapperFrameV1 = { input: undefined, images: new Map([['control', asFrame(controlPixels(0, 0))]]), previousOutput: () => undefined };
      const sample = values(inputs.sample);
      const timesteps = values(inputs.timestep);
      const textEmbeddings = values(inputs.encoder_hidden_states);
      const contribution = await wrapper.unetCall({ latents: sample, batch: 1, timesteps, steps: [0], stepCount: 1, unconditional: [false], textEmbeddings, frame });
      expect(Object.keys(contribution.inputs).sort()).toEqual([...RESIDUAL_INPUTS].sort());
      const { out_sample: out } = await model.sessions.run(
        'unet',
        { sample: hostTensor(sample, [1, 4, 8, 8]), timestep: hostTensor(timesteps, [1]), encoder_hidden_states: hostTensor(textEmbeddings, [1, 77, 32]), ...contribution.inputs },
        { read: ['out_sample'] },
      );
      return await out!.float32();
    } finally {
      await wrapper.dispose();
    }
  };

  const expectClose = (actual: Float32Array, golden: string): void => {
    const expected = values(goldens.cases.batch1.unet[golden]!.out_sample);
    expect(actual.length).toBe(expected.length);
    const worst = Math.max(...Array.from(actual, (value, index) => Math.abs(value - expected[index]!)));
    expect(worst, golden).toBeLessThanOrEqual(1e-4);
  };

  it('one ControlNet equals the PyTorch golden at scale 1 and 0.5; scale 0 and enabled: false equal no ControlNet', async () => {
    const canny = (scale: number, enabled = true) => ({ controlnets: [{ model_id: CANNY, conditioning_scale: scale, enabled, preprocessor: 'external' }] });
    expectClose(await unetWith(canny(1)), 'micro-canny@1.0');
    expectClose(await unetWith(canny(0.5)), 'micro-canny@0.5');
    expectClose(await unetWith(canny(0)), 'none');
    expectClose(await unetWith(canny(1, false)), 'none');
    expectClose(await unetWith({}), 'none');
    // The ControlNet moves the output, so the equalities above are not trivially the same numbers.
    const plain = values(goldens.cases.batch1.unet.none!.out_sample);
    const steered = await unetWith(canny(1));
    expect(Math.max(...Array.from(steered, (value, index) => Math.abs(value - plain[index]!)))).toBeGreaterThan(0.05);
  });

  it('outside control_guidance_start…end a ControlNet feeds nothing', async () => {
    const late = { controlnets: [{ model_id: CANNY, preprocessor: 'external', control_guidance_start: 0.5 }] };
    expectClose(await unetWith(late), 'none');
  });

  /** The residuals a wrapper of `controlnets` feeds for the golden inputs and this frame. */
  const residuals = async (controlnets: { model_id: string; conditioning_scale?: number }[], frame: WrapperFrameV1): Promise<Float32Array[]> => {
    const { inputs } = goldens.cases.batch1;
    const before = await runtime.stats();
    const wrapper = createControlNet({ controlnets: controlnets.map((entry) => ({ ...entry, preprocessor: 'external' })) });
    await wrapper.attach({ model, runtime, width: 64, height: 64, frameBufferSize: 1, latentShape: [4, 8, 8] });
    try {
      const call = { latents: values(inputs.sample), batch: 1, timesteps: values(inputs.timestep), steps: [0], stepCount: 1, unconditional: [false], textEmbeddings: values(inputs.encoder_hidden_states), frame };
      const { inputs: fed } = await wrapper.unetCall(call);
      return await Promise.all(RESIDUAL_INPUTS.map((name) => (fed[name] as RuntimeTensor).float32()));
    } finally {
      await wrapper.dispose();
      // The held control images, the residuals and the ControlNets' sessions are all released.
      expect(await runtime.stats()).toMatchObject({ tensors: before.tensors, sessions: before.sessions });
    }
  };
  const frameOf = (control: RgbImage, previous: RgbImage | undefined): WrapperFrameV1 => ({
    input: undefined,
    images: new Map([['control', asFrame(control)]]),
    previousOutput: () => (previous === undefined ? undefined : [previous]),
  });

  it('a 6-channel ControlNet takes the previous output in channels 0–2 and the control image in 3–5, as PyTorch does', async () => {
    const golden = goldens.cases.batch1.controlnet_residuals['micro-6ch']!;
    const fed = await residuals([{ model_id: SIX }], frameOf(controlPixels(1, 3), controlPixels(1, 0)));
    for (const [index, name] of RESIDUAL_INPUTS.entries()) {
      const expected = values(golden[name]!);
      const worst = Math.max(...Array.from(fed[index]!, (value, at) => Math.abs(value - expected[at]!)));
      expect(worst, name).toBeLessThanOrEqual(1e-5);
    }
  });

  it('two ControlNets add their scaled residuals', async () => {
    const frame = frameOf(controlPixels(0, 0), controlPixels(1, 0));
    const canny = await residuals([{ model_id: CANNY, conditioning_scale: 0.7 }], frame);
    const six = await residuals([{ model_id: SIX, conditioning_scale: 0.4 }], frame);
    const both = await residuals([{ model_id: CANNY, conditioning_scale: 0.7 }, { model_id: SIX, conditioning_scale: 0.4 }], frame);
    for (const [index, sum] of both.entries()) {
      const worst = Math.max(...Array.from(sum, (value, at) => Math.abs(value - (canny[index]![at]! + six[index]![at]!))));
      expect(worst, RESIDUAL_INPUTS[index]).toBeLessThanOrEqual(1e-6);
      expect(Math.max(...Array.from(six[index]!, Math.abs)), RESIDUAL_INPUTS[index]).toBeGreaterThan(0);
    }
  });
});
