import { createRuntime, createStreamDiffusion, loadModel, type AnyUNetWrapperV1, type LoadedModel, type Runtime } from '@streamdiffusion/core';
import { createControlNet, type ControlNetEntryInput } from '@streamdiffusion/controlnet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { frame, maxDifference, MICRO_CANNY, MICRO_CONTROLNET_MODEL, microIpControlNetModel, SIZE, STYLE_IMAGE } from '../test-support/fixtures.js';
import { createIpAdapter, type IpAdapterWrapper } from './ip-adapter-wrapper.js';



/** The wrapper with its UNet calls recorded: how many text values the wrapper saw, per call. */
function recording<W extends AnyUNetWrapperV1>(wrapper: W, seen: number[]): W {
  return { ...wrapper, unetCall: (call) => (seen.push(call.textEmbeddings.length / call.batch), wrapper.unetCall(call)) };
}

describe('IP-Adapter and ControlNet in one pipeline (micro model with both, CPU)', () => {
  let runtime: Runtime;
  let both: LoadedModel;
  let controlOnly: LoadedModel;
  let remove: () => Promise<void>;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    const made = await microIpControlNetModel();
    remove = made.remove;
    both = await loadModel({ runtime, folder: made.folder });
    controlOnly = await loadModel({ runtime, folder: MICRO_CONTROLNET_MODEL });
  });
  afterAll(async () => {
    await runtime.dispose();
    await remove();
  });

  const canny: ControlNetEntryInput = { model_id: MICRO_CANNY, preprocessor: 'canny', conditioning_scale: 1 };
  const adapter = (scale: number): Promise<IpAdapterWrapper> => createIpAdapter({ ipadapters: [{ ipadapter_model_path: both.folder.root, style_image: STYLE_IMAGE, scale }] });
  const run = async (model: LoadedModel, wrappers: AnyUNetWrapperV1[], frames: readonly number[]): Promise<Float32Array[]> => {
    const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse', tIndexList: [30], cfgType: 'none', width: SIZE, height: SIZE, wrappers });
    const made: Float32Array[] = [];
    for (const k of frames) made.push((await stream.img2imgTensor(frame(k))).images);
    await stream.dispose();
    return made;
  };

  it('with the adapter at scale 0 gives the ControlNet-only frames; at scale 1 both steer', async () => {
    const controlled = await run(controlOnly, [createControlNet({ controlnets: [canny] })], [0, 1]);
    const zero = await run(both, [createControlNet({ controlnets: [canny] }), await adapter(0)], [0, 1]);
    const on = await run(both, [createControlNet({ controlnets: [canny] }), await adapter(1)], [0, 1]);
    const styleOnly = await run(both, [createControlNet(), await adapter(1)], [0, 1]);
    for (const index of [0, 1]) {
      expect(maxDifference(zero[index]!, controlled[index]!), `frame ${index}`).toBeLessThan(1e-5);
      expect(maxDifference(on[index]!, controlled[index]!), `frame ${index}: the style steers`).toBeGreaterThan(1e-2);
      expect(maxDifference(on[index]!, styleOnly[index]!), `frame ${index}: the ControlNet steers`).toBeGreaterThan(1e-2);
    }
  });

  it('shows the ControlNet the 77 text tokens only, while the UNet gets the image tokens after them', async () => {
    const width = both.capabilities.textEmbeddingWidth;
    const controlSeen: number[] = [];
    const styleSeen: number[] = [];
    const ip = await adapter(1);
    const wrappers = [recording(createControlNet({ controlnets: [canny] }), controlSeen), recording(ip, styleSeen)];
    const recorded = await run(both, wrappers, [0]);
    expect(controlSeen).toEqual([77 * width]);
    expect(styleSeen).toEqual([77 * width]);
    // Either order of the wrappers: the same tokens reach the UNet (text, then the adapter's).
    const reversed = await run(both, [await adapter(1), createControlNet({ controlnets: [canny] })], [0]);
    expect(maxDifference(recorded[0]!, reversed[0]!)).toBe(0);
    expect(ip.extraTokens).toBe(4);
  });
});
