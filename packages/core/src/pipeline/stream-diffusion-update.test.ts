import { describe, expect, it } from 'vitest';
import { useTinyModel } from '../../test-support/tiny-model.js';
import { InvalidArgumentError } from '../errors/errors.js';
import type { LoadedModel } from '../model-folder/load-model.js';
import { goldenFrames } from '../../test-support/stream-goldens.js';
import { createStreamDiffusion } from './stream-diffusion.js';

const size = 3 * 64 * 64;
const frame = (index: number) => goldenFrames(index, 1, size);
const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((value, index) => value === b[index]);

describe('live parameter updates', () => {
  const tiny = useTinyModel();

  const make = () => createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', negativePrompt: 'blurry', cfgType: 'full', guidanceScale: 1.5, tIndexList: [20, 40], width: 64, height: 64 });

  it('never computes a frame with a half-applied update, even when frames and updates race', async () => {
    // Racing: nothing awaited between the calls. The update prepares beside the frames and lands
    // between two of them: before the second frame or after it, never inside one.
    const racing = await make();
    const first = racing.img2imgTensor(frame(0));
    const update = racing.update({ prompt: 'a red boat', guidance_scale: 2.5 });
    const second = racing.img2imgTensor(frame(1));
    const [a, , b] = await Promise.all([first, update, second]);
    expect(racing.getState()).toMatchObject({ prompt: 'a red boat', guidance_scale: 2.5 });

    // References: the same calls one after another, with the update before the second frame or not at all.
    const reference = async (updateFirst: boolean) => {
      const stream = await make();
      const one = await stream.img2imgTensor(frame(0));
      if (updateFirst) await stream.update({ prompt: 'a red boat', guidance_scale: 2.5 });
      return { one, two: await stream.img2imgTensor(frame(1)) };
    };
    const updated = await reference(true);
    const old = await reference(false);
    expect(same(a.latents, updated.one.latents)).toBe(true);
    expect(same(b.latents, updated.two.latents) || same(b.latents, old.two.latents)).toBe(true);

    // A half-applied update (the prompt without the guidance) gives another frame, so equality above is meaningful.
    const half = await make();
    await half.img2imgTensor(frame(0));
    await half.update({ prompt: 'a red boat' });
    const halfFrame = (await half.img2imgTensor(frame(1))).latents;
    expect(same(halfFrame, updated.two.latents) || same(halfFrame, old.two.latents)).toBe(false);
  });

  it('refuses a bad value naming the key, and leaves the stream exactly as it was', async () => {
    const stream = await make();
    const untouched = await make();
    await stream.img2imgTensor(frame(0));
    await untouched.img2imgTensor(frame(0));
    const before = stream.getState();
    expect(() => stream.update({ guidance_scale: -3 })).toThrow(InvalidArgumentError);
    expect(() => stream.update({ t_index_list: [10, 'x' as unknown as number] })).toThrow(/t_index_list\.1/);
    expect(() => stream.update({ width: 100 })).toThrow(/width: expected/);
    expect(() => stream.update({ strength: 1 } as never)).toThrow(InvalidArgumentError);
    await expect(stream.update({ t_index_list: [10, 60] })).rejects.toThrow(/tIndexList/);
    expect(stream.getState()).toEqual(before);
    expect(same((await stream.img2imgTensor(frame(1))).latents, (await untouched.img2imgTensor(frame(1))).latents)).toBe(true);
  });

  it('reports only what changed and what needs a reload, and getState round-trips', async () => {
    const stream = await make();
    expect(await stream.update(stream.getState())).toEqual({ applied: [], needsReload: [] });
    expect(await stream.update({ delta: 0.5, seed: 2, width: 128, cfg_type: 'full' })).toEqual({ applied: ['delta'], needsReload: ['width'] });
    expect(stream.getState()).toMatchObject({ width: 64, cfg_type: 'full' });
    expect(stream.getState()).toMatchObject({ delta: 0.5, seed: 2, prompt: 'a lighthouse', t_index_list: [20, 40] });
  });

  it('keeps the stream warm for a t_index_list of the same length, and restarts warm-up for a new length', async () => {
    const stream = await make();
    await stream.img2imgTensor(frame(0));
    expect((await stream.img2imgTensor(frame(1))).warm).toBe(true);
    await stream.update({ t_index_list: [10, 30] });
    expect((await stream.img2imgTensor(frame(2))).warm).toBe(true);
    await stream.update({ t_index_list: [10, 30, 45] });
    expect((await stream.img2imgTensor(frame(3))).warm).toBe(false);
  });

  it('encodes each prompt once, however often it comes back', async () => {
    let encodes = 0;
    const counting: LoadedModel = {
      ...tiny.model,
      prompts: {
        ...tiny.model.prompts,
        encode: (prompt) => {
          encodes += 1;
          return tiny.model.prompts.encode(prompt);
        },
      },
    };
    const stream = await createStreamDiffusion({ model: counting, prompt: 'a', tIndexList: [20], width: 64, height: 64 });
    await stream.update({ prompt: 'b' });
    await stream.update({ prompt: 'a' });
    await stream.update({ prompt: 'b', guidance_scale: 1.1 });
    expect(encodes).toBe(2);

    // The cache keeps the 32 most recently used prompts, not every prompt a session ever saw.
    for (let index = 0; index < 40; index += 1) await stream.update({ prompt: `prompt ${index}` });
    expect(encodes).toBe(42);
    await stream.update({ prompt: 'prompt 8' }); // among the last 32: cached
    expect(encodes).toBe(42);
    await stream.update({ prompt: 'a' }); // evicted long ago: encoded again
    expect(encodes).toBe(43);
    await stream.update({ prompt: 'prompt 8' }); // used again above, so 'a' evicted 'prompt 9', the least recently used, not it
    expect(encodes).toBe(43);
    // A blend of more prompts than the cache holds is still encoded once each, not evicted by itself.
    const many = Array.from({ length: 40 }, (_, index): [string, number] => [`blended ${index}`, 1]);
    await stream.update({ prompt_blending: { prompt_list: many, interpolation_method: 'linear' } });
    expect(encodes).toBe(83);
  });

  it('blends prompts and seeds: one weighted item equals the plain setting, two change the stream', async () => {
    const options = { model: tiny.model, cfgType: 'self' as const, tIndexList: [20, 40], width: 64, height: 64 };
    const plain = await createStreamDiffusion({ ...options, prompt: 'a lighthouse', seed: 7 });
    const single = await createStreamDiffusion({ ...options, prompt: 'ignored', seed: 1, promptBlending: [['a lighthouse', 3]], seedBlending: [[7, 2]] });
    const a = (await plain.img2imgTensor(frame(0))).latents;
    const b = (await single.img2imgTensor(frame(0))).latents;
    expect(Math.max(...a.map((value, index) => Math.abs(value - b[index]!)))).toBeLessThan(1e-5);

    const mixed = await createStreamDiffusion({ ...options, prompt: 'a lighthouse', seed: 7 });
    const { applied } = await mixed.update({ prompt_blending: { prompt_list: [['a lighthouse', 1], ['a red boat', 1]], interpolation_method: 'slerp' }, seed_blending: [[7, 1], [8, 1]] });
    expect(applied).toEqual(['prompt_blending', 'seed_blending']);
    expect(same((await mixed.img2imgTensor(frame(0))).latents, a)).toBe(false);
    await expect(mixed.update({ seed_blending: [[7, 0]] })).rejects.toThrow(/seed_blending: expected one or more weights >= 0 with a positive sum/);
  });
});
