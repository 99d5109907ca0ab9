import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { goldenFrames } from '../../test-support/stream-goldens.js';
import { useTinyModel, useWrapperModel } from '../../test-support/tiny-model.js';
import { DisposedError, InvalidArgumentError } from '../errors/errors.js';
import { tensorToImage } from '../image/image.js';
import { createTorchGenerator } from '../noise/torch-generator.js';
import { createLcmSchedule } from '../scheduler/lcm-schedule.js';
import { createMockWrapper } from '../test/mock-wrapper.js';
import { createStreamDiffusion } from './stream-diffusion.js';

const size = 3 * 64 * 64;
const frame = (index: number) => goldenFrames(index, 1, size);
const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((value, index) => value === b[index]);

describe('wrappers on a UNet with an extra input and an extra token', () => {
  const fixture = useWrapperModel();
  const feeding = (options: { residual?: number; token?: number } = {}) => createMockWrapper({ unetInputs: ['extra_residual'], extraTokens: 1, ...options });

  it("reach the UNet: its extra input and its token after the 77 text tokens decide the prediction", async () => {
    const mock = feeding({ residual: 0.25, token: 0.5 });
    const stream = await createStreamDiffusion({ model: fixture.model, prompt: 'a lighthouse', tIndexList: [30], width: 64, height: 64, seed: 7, wrappers: [mock] });
    const { latents } = await stream.txt2imgOneStepTensor();

    // The stand-in UNet predicts extra_residual + mean(token 77) = 0.25 + 0.5 everywhere, so the
    // one-step result is (noise − β·0.75) / α with the seed's noise: exact if and only if both arrived.
    const { alpha, beta } = createLcmSchedule(fixture.model.folder.scheduler).streamConstants({ numInferenceSteps: 50, tIndexList: [30] });
    const generator = createTorchGenerator(7);
    const noise = generator.randn([1, 4, 8, 8]);
    const expected = noise.map((x) => Math.fround(x - Math.fround(beta[0]! * 0.75)) / alpha[0]!);
    expect(same(latents, expected)).toBe(true);
    expect(mock.calls).toEqual([expect.objectContaining({ residual: 0.25, token: 0.5, batch: 1, steps: [0], textEmbeddingValues: 77 * 32, hasInput: false })]);
    expect(mock.pipeline).toMatchObject({ width: 64, height: 64, frameBufferSize: 1, latentShape: [4, 8, 8] });

    // A hot change of the wrapper's value reaches the next frame.
    expect(await stream.update({ mock_token: 1.5 })).toEqual({ applied: ['mock_token'], needsReload: [] });
    const after = await stream.txt2imgOneStepTensor();
    const noise2 = generator.randn([1, 4, 8, 8]);
    expect(same(after.latents, noise2.map((x) => Math.fround(x - Math.fround(beta[0]! * 1.75)) / alpha[0]!))).toBe(true);
  });

  it('fails at construction, before any wrapper loads, when the UNet inputs do not fit', async () => {
    const model = fixture.model;
    await expect(createStreamDiffusion({ model, prompt: '', width: 64, height: 64 })).rejects.toThrow(/UNet inputs extra_residual of .*controlnet/s);
    const noTokens = createMockWrapper({ unetInputs: ['extra_residual'] });
    await expect(createStreamDiffusion({ model, prompt: '', width: 64, height: 64, wrappers: [noTokens] })).rejects.toThrow(
      /fill the UNet's 78 tokens \(77 text \+ 1\); these give 77 text = 77/,
    );
    expect(noTokens.events).toEqual([]);
  });

  it('never runs a frame with half an update: every UNet call of a frame sees the same wrapper values', async () => {
    // Without the denoising batch a frame is two UNet calls, so a mid-frame update would split them.
    const make = (mock: ReturnType<typeof feeding>) =>
      createStreamDiffusion({ model: fixture.model, prompt: 'a lighthouse', tIndexList: [20, 40], width: 64, height: 64, useDenoisingBatch: false, wrappers: [mock] });
    const racingMock = feeding({ residual: 0.1 });
    const racing = await make(racingMock);
    const results = await Promise.all([racing.img2imgTensor(frame(0)), racing.update({ mock_residual: 0.7, delta: 0.5 }), racing.img2imgTensor(frame(1))]);
    // The update lands between the frames or after the second, never between a frame's two calls.
    const seen = racingMock.calls.map((call) => call.residual);
    expect([[0.1, 0.1, 0.7, 0.7], [0.1, 0.1, 0.1, 0.1]]).toContainEqual(seen);

    const serialMock = feeding({ residual: 0.1 });
    const serial = await make(serialMock);
    await serial.img2imgTensor(frame(0));
    if (seen[2] === 0.7) await serial.update({ mock_residual: 0.7, delta: 0.5 });
    expect(same(results[2].latents, (await serial.img2imgTensor(frame(1))).latents)).toBe(true);
  });
});

describe('wrappers on the plain tiny model', () => {
  const tiny = useTinyModel();
  const make = <const W extends readonly ReturnType<typeof createMockWrapper>[]>(wrappers: W, extra: { tIndexList?: number[] } = {}) =>
    createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: extra.tIndexList ?? [20, 40], width: 64, height: 64, wrappers });

  it('refuses a wrapper that asks for UNet inputs the model lacks, naming them and what the model has', async () => {
    const mock = createMockWrapper({ unetInputs: ['down_block_residual_0'] });
    const attempt = make([mock]);
    await expect(attempt).rejects.toThrow(InvalidArgumentError);
    await expect(attempt).rejects.toThrow(/wrappers\[0\] \(mock\)\.unetInputs: expected an input of the model's UNet \(.*has sample, timestep, encoder_hidden_states\).*got "down_block_residual_0"/);
    expect(mock.events).toEqual([]);
  });

  it('refuses parameter keys that clash with the pipeline or another wrapper', async () => {
    const stealsPrompt = { ...createMockWrapper(), parameters: { prompt: z.string().default('') } };
    await expect(createStreamDiffusion({ model: tiny.model, prompt: '', width: 64, height: 64, wrappers: [stealsPrompt] })).rejects.toThrow(/the pipeline owns "prompt"/);
    await expect(make([createMockWrapper(), createMockWrapper({ name: 'second' })])).rejects.toThrow(/wrappers\[1\] \(second\)\.parameters: .*wrappers\[0\] \(mock\) owns "mock_residual"/);
  });

  it('releases the wrappers already attached when a later one fails to attach', async () => {
    const first = createMockWrapper({ prefix: 'first' });
    const second = createMockWrapper({ prefix: 'second', fail: 'attach' });
    await expect(make([first, second])).rejects.toThrow(/attach failed/);
    expect(first.events).toEqual(['attach', 'dispose']);
    expect(second.events).toEqual(['attach', 'dispose']);
  });

  it('releases attached wrappers when the pipeline itself then fails to build', async () => {
    const mock = createMockWrapper();
    await expect(make([mock], { tIndexList: [10, 60] })).rejects.toThrow(/tIndexList/);
    expect(mock.events).toEqual(['attach', 'dispose']);
  });

  it('composes one parameter schema and one state from the pipeline and every wrapper', async () => {
    const a = createMockWrapper({ prefix: 'a', residual: 0.5 });
    const b = createMockWrapper({ prefix: 'b' });
    const stream = await make([a, b]);
    expect(stream.getState()).toMatchObject({ prompt: 'a lighthouse', width: 64, a_residual: 0.5, a_variant: 'a', b_token: 0 });
    expect(stream.parametersSchema.safeParse({ prompt: 'x', a_residual: 1, b_variant: 'b' }).success).toBe(true);
    expect(stream.parametersSchema.safeParse({ a_residual: 'x' }).success).toBe(false);
    expect(stream.parametersSchema.safeParse({ c_residual: 1 }).success).toBe(false);
    const json = z.toJSONSchema(stream.parametersSchema, { io: 'input' }) as { properties: Record<string, { description?: string; update?: string }> };
    expect(json.properties.b_variant).toMatchObject({ update: 'reload', description: 'A choice that needs a new pipeline.' });
    expect(json.properties.guidance_scale).toMatchObject({ update: 'hot' });

    // Routed to their owners; reload keys reported, not applied; getState round-trips.
    expect(await stream.update({ a_residual: 0.25, b_variant: 'b', guidance_scale: 1.4, width: 128 })).toEqual({
      applied: ['guidance_scale', 'a_residual'],
      needsReload: ['width', 'b_variant'],
    });
    expect(a.events).toEqual(['attach', 'prepare', 'prepared', 'commit']);
    expect(b.events).toEqual(['attach', 'prepare', 'prepared', 'commit']);
    expect(await stream.update(stream.getState())).toEqual({ applied: [], needsReload: [] });
    expect(stream.getState()).toMatchObject({ a_residual: 0.25, b_variant: 'a', guidance_scale: 1.4, width: 64 });
  });

  it("refuses a bad wrapper value naming its key, and keeps everything when any part of an update fails", async () => {
    const mock = createMockWrapper({ residual: 0.5 });
    const stream = await make([mock]);
    const untouched = await make([createMockWrapper({ residual: 0.5 })]);
    await stream.img2imgTensor(frame(0));
    await untouched.img2imgTensor(frame(0));
    const before = stream.getState();

    expect(() => stream.update({ mock_residual: 'loud' as unknown as number })).toThrow(/mock_residual: expected number/);
    // The wrapper prepares, the pipeline's part fails (an index past the schedule): the wrapper's part is abandoned.
    await expect(stream.update({ mock_residual: 0.9, t_index_list: [10, 60] })).rejects.toThrow(/tIndexList/);
    expect(mock.events).toEqual(['attach', 'prepare', 'prepared', 'abandon']);
    expect(stream.getState()).toEqual(before);

    const failing = createMockWrapper({ prefix: 'failing', fail: 'prepare' });
    const stream2 = await make([failing]);
    const before2 = stream2.getState();
    await expect(stream2.update({ failing_residual: 1, prompt: 'a red boat' })).rejects.toThrow(/prepareUpdate failed/);
    expect(stream2.getState()).toEqual(before2);

    expect(same((await stream.img2imgTensor(frame(1))).latents, (await untouched.img2imgTensor(frame(1))).latents)).toBe(true);
  });

  it('prepares an update beside the running frames (a slow model load does not stall the stream) and swaps it in between two frames', async () => {
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const mock = createMockWrapper({ residual: 0.5, prepareGate: () => gate });
    const stream = await make([mock]);
    const updating = stream.update({ mock_residual: 0.75, prompt: 'a red boat' });
    let settled = false;
    void updating.then(() => (settled = true));
    // While the wrapper is still preparing, frames keep coming, with the old values.
    for (let index = 0; index < 2; index += 1) await stream.img2imgTensor(frame(index));
    expect(settled).toBe(false);
    expect(mock.calls.map((call) => call.residual)).toEqual([0.5, 0.5]);
    expect(stream.getState()).toMatchObject({ mock_residual: 0.5, prompt: 'a lighthouse' });
    open();
    expect(await updating).toEqual({ applied: ['prompt', 'mock_residual'], needsReload: [] });
    await stream.img2imgTensor(frame(2));
    expect(mock.calls.at(-1)!.residual).toBe(0.75);
    expect(mock.events).toEqual(['attach', 'prepare', 'prepared', 'commit']);
  });

  it('shows wrappers the previous output as images: none before the first frame, then the last result', async () => {
    const mock = createMockWrapper();
    const stream = await make([mock], { tIndexList: [20] });
    const first = await stream.img2img({ data: new Uint8Array(64 * 64 * 3).fill(90), width: 64, height: 64, channels: 3 });
    expect(mock.calls.at(-1)!.previousOutput).toBeNull();
    await stream.img2img({ data: new Uint8Array(64 * 64 * 3).fill(30), width: 64, height: 64, channels: 3 });
    expect(mock.calls.at(-1)!.previousOutput).toEqual([[...first.images[0]!.data.subarray(0, 6)]]);
    // Kept as tensors (the tensor API), the previous output is converted on ask: the same pixels.
    const tensor = await stream.img2imgTensor(frame(0));
    await stream.img2imgTensor(frame(1));
    expect(mock.calls.at(-1)!.previousOutput).toEqual([[...tensorToImage(tensor.images, [1, 3, 64, 64]).data.subarray(0, 6)]]);
  });

  it('hands each wrapper its frame images: given ones by name, the input frame as fallback', async () => {
    const mock = createMockWrapper({
      frameImages: [
        { name: 'control', description: 'a control image', fallback: 'input' },
        { name: 'style', description: 'a style image', fallback: 'required' },
      ],
    });
    const stream = await make([mock], { tIndexList: [20] });
    const style = new Float32Array(size).fill(0.25);
    const input = frame(0);
    await stream.img2imgTensor(input, { images: { style } });
    expect(mock.calls.at(-1)!.images).toEqual({ control: input[0], style: 0.25 });
    const control = new Float32Array(size).fill(-0.5);
    await stream.img2imgTensor(frame(1), { images: { style, control } });
    expect(mock.calls.at(-1)!.images).toEqual({ control: -0.5, style: 0.25 });

    const calls = mock.calls.length;
    await expect(stream.img2imgTensor(frame(2))).rejects.toThrow(/images\.style: expected a style image \(mock; it is required\)/);
    await expect(stream.img2imgTensor(frame(2), { images: { style, depth: style } })).rejects.toThrow(/images\.depth: expected one of control, style/);
    await expect(stream.img2imgTensor(frame(2), { images: { style: new Float32Array(3) } })).rejects.toThrow(/images\.style: expected \[1, 3, 64, 64\]/);
    await expect(stream.txt2imgTensor({ images: { style } })).rejects.toThrow(/images\.control: .*no input frame to fall back to/);
    expect(mock.calls.length).toBe(calls);
  });

  it('dispose() waits for the running frame, disposes the wrappers last first, and refuses later calls', async () => {
    const order: string[] = [];
    const tracked = (prefix: string) => {
      const mock = createMockWrapper({ prefix });
      return { ...mock, dispose: async () => void order.push(prefix) };
    };
    const stream = await createStreamDiffusion({ model: tiny.model, prompt: 'x', width: 64, height: 64, wrappers: [tracked('a'), tracked('b')] });
    const running = stream.img2imgTensor(frame(0));
    await Promise.all([stream.dispose(), stream.dispose()]);
    await expect(running).resolves.toMatchObject({ skipped: false });
    expect(order).toEqual(['b', 'a']);
    await expect(stream.img2imgTensor(frame(1))).rejects.toThrow(DisposedError);
    expect(() => stream.update({ prompt: 'y' })).toThrow(DisposedError);
    // The model is the caller's: still usable.
    expect(tiny.model.sessions.models).toContain('unet');
  });
});

describe('frame preparation (prepareFrame / releaseFrame)', () => {
  const tiny = useTinyModel();
  const make = (mock: ReturnType<typeof createMockWrapper>) => createStreamDiffusion({ model: tiny.model, prompt: 'a lighthouse', tIndexList: [20, 40], width: 64, height: 64, wrappers: [mock] });

  it('prepares a frame as soon as it is given, beside the frame in flight, before that frame reaches its UNet', async () => {
    const mock = createMockWrapper({ frameHooks: {} });
    const stream = await make(mock);
    // Two frames given at once: the second is prepared while the first is still on its way to the UNet.
    await Promise.all([stream.img2imgTensor(frame(0)), stream.img2imgTensor(frame(1))]);
    expect(mock.events).toEqual([
      'attach',
      'prepare-frame 0 (previous output: throws)',
      'prepare-frame 1 (previous output: throws)',
      'unet 0',
      'release-frame 0',
      'unet 1',
      'release-frame 1',
    ]);
    // In its turn the frame sees the output before it, as without preparation.
    expect(mock.calls[0]!.previousOutput).toBeNull();
    expect(mock.calls[1]!.previousOutput).not.toBeNull();
  });

  it('gives the same results with frames given together as one after another', async () => {
    const together = await make(createMockWrapper({ frameHooks: {} }));
    const oneByOne = await make(createMockWrapper({ frameHooks: {} }));
    const overlapped = await Promise.all([0, 1, 2].map((index) => together.img2imgTensor(frame(index))));
    for (const [index, result] of overlapped.entries()) expect(same(result.images, (await oneByOne.img2imgTensor(frame(index))).images)).toBe(true);
  });

  it("waits for a slow preparation in the frame's turn, and a failed one fails that frame only (released, the next frame runs)", async () => {
    let open: () => void = () => undefined;
    const slow = new Promise<void>((resolve) => (open = resolve));
    const mock = createMockWrapper({ frameHooks: { gate: (number) => (number === 1 ? slow : Promise.resolve()), fail: [2] } });
    const stream = await make(mock);
    const first = stream.img2imgTensor(frame(0));
    const second = stream.img2imgTensor(frame(1));
    await first;
    // Frame 0 is done; frame 1 is still preparing, so its UNet has not run.
    expect(mock.events.filter((event) => event.startsWith('unet'))).toEqual(['unet 0']);
    open();
    await second;
    await expect(stream.img2imgTensor(frame(2))).rejects.toThrow(/prepareFrame 2 failed/);
    await stream.img2imgTensor(frame(3));
    expect(mock.events.filter((event) => !event.startsWith('prepare-frame'))).toEqual(['attach', 'unet 0', 'release-frame 0', 'unet 1', 'release-frame 1', 'release-frame 2', 'unet 3', 'release-frame 3']);
  });

  it('releases a frame the similarity filter skips, and one given after dispose is never prepared', async () => {
    const mock = createMockWrapper({ frameHooks: {} });
    const stream = await createStreamDiffusion({
      model: tiny.model,
      prompt: 'a lighthouse',
      tIndexList: [20],
      width: 64,
      height: 64,
      wrappers: [mock],
      similarityFilter: { threshold: 0.5, maxSkipFrames: 10, random: () => 0 },
    });
    await stream.img2imgTensor(frame(0));
    expect((await stream.img2imgTensor(frame(0))).skipped).toBe(true);
    expect(mock.events).toEqual(['attach', 'prepare-frame 0 (previous output: throws)', 'unet 0', 'release-frame 0', 'prepare-frame 1 (previous output: throws)', 'release-frame 1']);
    await stream.dispose();
    await expect(stream.img2imgTensor(frame(1))).rejects.toThrow(DisposedError);
    expect(mock.events.at(-1)).toBe('dispose');
  });
});
