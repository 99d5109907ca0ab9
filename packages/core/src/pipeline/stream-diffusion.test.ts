import { describe, expect, it } from 'vitest';
import { useTinyModel } from '../../test-support/tiny-model.js';
import { InvalidArgumentError } from '../errors/errors.js';
import { imageToTensor, tensorToImage } from '../image/image.js';
import { goldenFrames } from '../../test-support/stream-goldens.js';
import { createFrameStream } from '../stream/frame-stream.js';
import { createStreamDiffusion } from './stream-diffusion.js';

/** A 64 × 64 RGB test frame whose colours move with `phase`. */
function frame(phase: number) {
  const data = new Uint8Array(64 * 64 * 3);
  for (let index = 0; index < data.length; index += 1) data[index] = (index * 7 + phase * 31) % 256;
  return { data, width: 64, height: 64, channels: 3 as const };
}

describe('StreamDiffusion on the tiny model (CPU)', () => {
  const tiny = useTinyModel();

  it('turns frames into frames, warm after n calls, the same for the same seed', async () => {
    const make = () => createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: [0, 16, 32], width: 64, height: 64 });
    const first = await make();
    const second = await make();
    const warmth: boolean[] = [];
    for (let call = 0; call < 4; call += 1) {
      const a = await first.img2img(frame(call));
      const b = await second.img2img(frame(call));
      warmth.push(a.warm);
      expect(a.images).toHaveLength(1);
      expect(a.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
      expect(Array.from(a.images[0]!.data)).toEqual(Array.from(b.images[0]!.data));
    }
    expect(warmth).toEqual([false, false, true, true]);
  });

  it('warm-up with frame_buffer_size 2: the first n − 1 calls ((n − 1)·f frames) are not warm, and each call returns the frames given n − 1 calls before', async () => {
    // n = 2, f = 2, no guidance: a call's output depends only on the frames that entered one call
    // earlier. Two streams see the same frames except at call 1.
    const options = { model: tiny.model, prompt: 'a lighthouse', cfgType: 'none' as const, tIndexList: [10, 30], width: 64, height: 64, frameBufferSize: 2 };
    const a = await createStreamDiffusion(options);
    const b = await createStreamDiffusion(options);
    const pair = (first: number) => [frame(first), frame(first + 1)];
    const calls = [
      [pair(0), pair(0)],
      [pair(2), pair(10)],
      [pair(4), pair(4)],
    ];
    const warmth: boolean[] = [];
    const same: boolean[] = [];
    const pixels = (images: readonly { data: Uint8Array }[]) => images.flatMap((image) => Array.from(image.data));
    for (const [forA, forB] of calls) {
      const [one, two] = [await a.img2img(forA!), await b.img2img(forB!)];
      expect(one.images).toHaveLength(2);
      warmth.push(one.warm);
      same.push(JSON.stringify(pixels(one.images)) === JSON.stringify(pixels(two.images)));
    }
    expect(warmth).toEqual([false, true, true]);
    // Call 1 returns call 0's frames (the same for both); call 2 returns call 1's, which differed.
    expect(same).toEqual([true, true, false]);
  });

  it('gives images equal to its decoded tensors through tensorToImage (pixels converted by the decoder’s device), for f = 2 and after a skip', async () => {
    const options = { model: tiny.model, prompt: 'a lighthouse', tIndexList: [10, 30], width: 64, height: 64, frameBufferSize: 2 };
    const plane = 3 * 64 * 64;
    const asTensor = async (images: ReturnType<typeof frame>[]): Promise<Float32Array> => {
      const values = new Float32Array(images.length * plane);
      for (const [index, image] of images.entries()) values.set((await imageToTensor(image, { width: 64, height: 64 })).data, index * plane);
      return values;
    };
    const expectSame = (images: readonly { data: Uint8Array }[], decoded: Float32Array, label: string): void => {
      expect(images).toHaveLength(2);
      for (const index of [0, 1]) {
        const expected = tensorToImage(decoded.subarray(index * plane, (index + 1) * plane), [1, 3, 64, 64]);
        expect(Array.from(images[index]!.data), `${label}, frame ${index}`).toEqual(Array.from(expected.data));
      }
    };
    const pixels = await createStreamDiffusion(options);
    const tensors = await createStreamDiffusion(options);
    for (let call = 0; call < 3; call += 1) {
      const frames = [frame(2 * call), frame(2 * call + 1)];
      expectSame((await pixels.img2img(frames)).images, (await tensors.img2imgTensor(await asTensor(frames))).images, `call ${call}`);
    }
    // With the filter, a skip returns the kept output in the form asked for; in the other form it
    // decodes the kept latents again.
    const filtered = await createStreamDiffusion({ ...options, similarityFilter: { threshold: 0.99, maxSkipFrames: 10, random: () => 0 } });
    const frames = [frame(0), frame(1)];
    const first = await filtered.img2img(frames);
    const skippedPixels = await filtered.img2img(frames);
    const skippedTensor = await filtered.img2imgTensor(await asTensor(frames));
    expect([first.skipped, skippedPixels.skipped, skippedTensor.skipped]).toEqual([false, true, true]);
    expect(skippedPixels.images.map((image) => Array.from(image.data))).toEqual(first.images.map((image) => Array.from(image.data)));
    expectSame(first.images, skippedTensor.images, 'skipped');
  });

  it('says where each call’s time went, stage by stage, and the worker counts the model runs', async () => {
    const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: [10, 30], width: 64, height: 64, useDenoisingBatch: false });
    const before = await tiny.runtime.stats();
    const { timings } = await stream.img2img(frame(0));
    const after = await tiny.runtime.stats();
    for (const stage of ['preprocess', 'encode', 'unet', 'scheduler', 'decode'] as const) expect(timings[stage], stage).toBeGreaterThan(0);
    // Pixels come back converted by the decoder's device; only splitting them into frames is left.
    expect(timings.postprocess).toBeGreaterThanOrEqual(0);
    const stages = timings.preprocess + timings.encode + timings.unet + timings.scheduler + timings.decode + timings.postprocess;
    expect(stages).toBeLessThanOrEqual(timings.total + 1e-6);
    // Two steps without a denoising batch: two UNet runs in this call, and the worker saw them.
    expect(after.runs.unet!.count - (before.runs.unet?.count ?? 0)).toBe(2);
    expect(after.runs.unet!.ms - (before.runs.unet?.ms ?? 0)).toBeLessThanOrEqual(timings.unet);
  });

  it('gives different noise, so different images, for a different seed', async () => {
    const one = await createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: [0], width: 64, height: 64, seed: 1 });
    const two = await createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: [0], width: 64, height: 64, seed: 7 });
    const a = await one.img2imgTensor((await one.txt2imgTensor()).images);
    const b = await two.img2imgTensor((await two.txt2imgTensor()).images);
    expect(a.images.some((value, index) => value !== b.images[index])).toBe(true);
  });

  it('returns f images per call with frame_buffer_size f, for every cfg type', async () => {
    for (const cfgType of ['none', 'self', 'initialize', 'full'] as const) {
      const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'x', negativePrompt: 'blurry', cfgType, guidanceScale: 1.5, tIndexList: [10, 30], frameBufferSize: 2, width: 128, height: 64 });
      const result = await stream.img2img([frame(1), frame(2)]);
      expect(result.images.map((image) => [image.width, image.height])).toEqual([
        [128, 64],
        [128, 64],
      ]);
      const text = await stream.txt2img();
      expect(text.images).toHaveLength(2);
    }
  });

  it('feeds the negative prompt to full and initialize guidance, and only to them', async () => {
    const run = async (cfgType: 'full' | 'initialize' | 'self', negativePrompt: string) => {
      const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', negativePrompt, cfgType, guidanceScale: 2, tIndexList: [10, 30], width: 64, height: 64 });
      await stream.img2img(frame(0));
      return (await stream.img2imgTensor((await stream.txt2imgTensor()).images)).latents;
    };
    const differs = (a: Float32Array, b: Float32Array) => a.some((value, index) => value !== b[index]);
    expect(differs(await run('full', 'blurry'), await run('full', 'a red boat'))).toBe(true);
    expect(differs(await run('initialize', 'blurry'), await run('initialize', 'a red boat'))).toBe(true);
    expect(differs(await run('self', 'blurry'), await run('self', 'a red boat'))).toBe(false);
  });

  it('keeps the negative prompt with prompt blending on, and takes a new one through update', async () => {
    // A popular fork drops the negative prompt when prompt blending is on (DESIGN §4); here it stays.
    const pixels = (index: number) => goldenFrames(index, 1, 3 * 64 * 64);
    const differs = (a: Float32Array, b: Float32Array) => a.some((value, index) => value !== b[index]);
    const promptBlending: [string, number][] = [
      ['a lighthouse', 1],
      ['a red boat', 1],
    ];
    const blended = async (cfgType: 'full' | 'initialize', negativePrompt: string) => {
      const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'ignored', promptBlending, negativePrompt, cfgType, guidanceScale: 2, tIndexList: [10, 30], width: 64, height: 64 });
      await stream.img2img(frame(0));
      return (await stream.img2imgTensor(pixels(1))).latents;
    };
    expect(differs(await blended('full', 'blurry'), await blended('full', 'a green field'))).toBe(true);
    expect(differs(await blended('initialize', 'blurry'), await blended('initialize', 'a green field'))).toBe(true);

    // Live: the same stream before and after update({ negative_prompt }) against one left alone.
    // `initialize` uses the negative pass for the stock noise of the next call, so compare two calls on.
    const updated = async (cfgType: 'full' | 'initialize', negativePrompt: string) => {
      const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', promptBlending, negativePrompt: 'blurry', cfgType, guidanceScale: 2, tIndexList: [10, 30], width: 64, height: 64 });
      await stream.img2img(frame(0));
      await stream.update({ negative_prompt: negativePrompt });
      expect(stream.getState().negative_prompt).toBe(negativePrompt);
      await stream.img2img(frame(1));
      return (await stream.img2imgTensor(pixels(2))).latents;
    };
    expect(differs(await updated('full', 'blurry'), await updated('full', 'a green field'))).toBe(true);
    expect(differs(await updated('initialize', 'blurry'), await updated('initialize', 'a green field'))).toBe(true);
  });

  it('runs under a frame stream: a slow pipeline drops waiting frames instead of queueing them', async () => {
    const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'x', tIndexList: [20], width: 64, height: 64 });
    const frames = createFrameStream({ process: (input: ReturnType<typeof frame>) => stream.img2img(input) });
    const results = frames.results();
    for (let index = 0; index < 5; index += 1) frames.push(frame(index)); // all pushed while the first runs
    const first = await results.next();
    const second = await results.next();
    expect([first.value?.index, second.value?.index]).toEqual([0, 4]);
    expect(frames.stats).toMatchObject({ pushed: 5, processed: 2, dropped: 3 });
    expect(second.value !== undefined && 'output' in second.value && second.value.output.images[0]?.width).toBe(64);
    await frames.dispose();
    expect((await results.next()).done).toBe(true);
  });

  it('skips a repeated frame with the similarity filter and returns the previous output', async () => {
    const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'x', tIndexList: [20], width: 64, height: 64, similarityFilter: { threshold: 0.9, random: () => 0.5 } });
    const first = await stream.img2img(frame(3));
    const again = await stream.img2img(frame(3));
    expect(first.skipped).toBe(false);
    expect(again.skipped).toBe(true);
    expect(Array.from(again.images[0]!.data)).toEqual(Array.from(first.images[0]!.data));
  });

  it('names bad options', async () => {
    await expect(createStreamDiffusion({ model: tiny.model, prompt: 'x', width: 60 })).rejects.toThrow(InvalidArgumentError);
    await expect(createStreamDiffusion({ model: tiny.model, prompt: 'x', width: 60 })).rejects.toThrow('width: expected a positive multiple of 64 (VAE ×8, UNet ×8), got 60');
    const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'x', tIndexList: [20], width: 64, height: 64, frameBufferSize: 2 });
    await expect(stream.img2img(frame(0))).rejects.toThrow('frames: expected frame_buffer_size = 2 frames, got "1 frames"');
    const twoSteps = await createStreamDiffusion({ model: tiny.model, prompt: 'x', tIndexList: [20, 40], width: 64, height: 64 });
    await expect(twoSteps.txt2imgOneStepTensor()).rejects.toThrow('t_index_list: expected one entry for one-step txt2img, got [20,40]');
  });
});
