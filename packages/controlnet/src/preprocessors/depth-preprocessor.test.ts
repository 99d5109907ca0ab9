import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DisposedError,
  InvalidArgumentError,
  ModelFolderError,
  createRuntime,
  resizeImage,
  type RgbImage,
  type Runtime,
} from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, greyChannel, onnxGolden, PREPROCESSOR_FIXTURES } from '../../test-support/onnx-goldens.js';
import { depthPreprocessor } from './depth-preprocessor.js';
import { greyToRgb } from './grey-image.js';
import { parsePreprocessorParameters } from './preprocessor-parameters.js';

const fixtures = PREPROCESSOR_FIXTURES;
const { golden, frame } = await onnxGolden('depth');

describe('depth (tiny random-weight model)', () => {
  let runtime: Runtime;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
  });
  afterAll(async () => {
    await runtime.dispose();
  });

  it('needs a model and defaults invert to false', () => {
    expect(depthPreprocessor.needsModel).toBe(true);
    expect(depthPreprocessor.usesPreviousOutput).toBe(false);
    expect(depthPreprocessor.parameters.parse({})).toEqual({ invert: false });
  });

  it("loads, gives Python onnxruntime's output normalised per frame (and inverted), and disposes its session", async () => {
    expect(golden.output_dims).toEqual([1, 16, 24]);
    const before = (await runtime.stats()).sessions;
    const instance = await depthPreprocessor.create({ runtime, modelPath: join(fixtures, 'depth') });
    expect((await runtime.stats()).sessions).toBe(before + 1);
    const context = { width: golden.width, height: golden.height, previousOutput: undefined };
    const output = await instance.process(frame, { invert: false }, context);
    expect(output).toMatchObject({ width: 24, height: 16, channels: 3 });
    const grey = greyChannel(output);
    expect(grey).toEqual(bytes(golden.grey));
    // Min-max: the darkest pixel is 0 and the brightest 255.
    expect([Math.min(...grey), Math.max(...grey)]).toEqual([0, 255]);
    expect(greyChannel(await instance.process(frame, { invert: true }, context))).toEqual(bytes(golden.grey_inverted));
    await instance.dispose();
    expect((await runtime.stats()).sessions).toBe(before);
    expect((await runtime.stats()).tensors).toBe(0);
    await expect(instance.process(frame, { invert: false }, context)).rejects.toBeInstanceOf(DisposedError);
  });

  it("resizes any frame to preprocessor.json's input size and the result to the pipeline's size", async () => {
    const instance = await depthPreprocessor.create({ runtime, modelPath: join(fixtures, 'depth') });
    // The same frame at the model's input size, resized back to 40×30: the golden, resized.
    const output = await instance.process(frame, { invert: false }, { width: 40, height: 30, previousOutput: undefined });
    expect(output).toMatchObject({ width: 40, height: 30, channels: 3 });
    const expected = await resizeImage(greyToRgb(new Uint8Array(Buffer.from(golden.grey, 'base64')), golden), { width: 40, height: 30 });
    expect(greyChannel(output)).toEqual(greyChannel(expected));
    // A frame of another size (RGBA) runs too.
    const large: RgbImage = { data: new Uint8Array(64 * 48 * 4).fill(90), width: 64, height: 48, channels: 4 };
    const flat = await instance.process(large, { invert: false }, { width: 32, height: 32, previousOutput: undefined });
    expect(flat).toMatchObject({ width: 32, height: 32, channels: 3 });
    expect(flat.data).toHaveLength(32 * 32 * 3);
    await instance.dispose();
  });

  it('rejects invert values that are not booleans, naming field and value', () => {
    expect(() => parsePreprocessorParameters(depthPreprocessor, { invert: 'yes' })).toThrow(
      /preprocessor_params\.invert: expected true or false \(preprocessor "depth"\), got "yes"/,
    );
  });
});

describe('depth model errors', () => {
  let runtime: Runtime;
  let folder: string;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    folder = await mkdtemp(join(tmpdir(), 'depth-preprocessor-'));
  });
  afterAll(async () => {
    await runtime.dispose();
    await rm(folder, { recursive: true, force: true });
  });

  it('names modelPath when there is none', async () => {
    const error = await depthPreprocessor.create({ runtime }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).field).toBe('modelPath');
  });

  it('says what is missing: the path, or model.onnx in the folder', async () => {
    const missing = await depthPreprocessor.create({ runtime, modelPath: join(folder, 'nothing-here') }).catch((caught: unknown) => caught);
    expect(missing).toBeInstanceOf(ModelFolderError);
    expect((missing as ModelFolderError).problem).toBe('missing-file');
    const empty = await depthPreprocessor.create({ runtime, modelPath: folder }).catch((caught: unknown) => caught);
    expect(empty).toBeInstanceOf(ModelFolderError);
    expect((empty as ModelFolderError).path).toBe(join(folder, 'model.onnx'));
  });

  it('rejects a bad preprocessor.json and keeps no session loaded', async () => {
    await copyFile(join(fixtures, 'depth', 'model.onnx'), join(folder, 'model.onnx'));
    const before = (await runtime.stats()).sessions;
    for (const [config, message] of [
      ['{ "mean": [0.5, 0.5] }', /mean/],
      ['{ "std": [1, 0, 1] }', /std: no zero/],
      ['{ "input_size": 0 }', /input_size/],
      ['{ "inputsize": 512 }', /inputsize|Unrecognized/],
      ['not json', /not JSON/],
    ] as const) {
      await writeFile(join(folder, 'preprocessor.json'), config);
      const error = await depthPreprocessor.create({ runtime, modelPath: folder }).catch((caught: unknown) => caught);
      expect(error, config).toBeInstanceOf(ModelFolderError);
      expect((error as ModelFolderError).problem).toBe('bad-config');
      expect((error as Error).message).toMatch(message);
    }
    expect((await runtime.stats()).sessions).toBe(before);
  });

  it('uses its default input size (518) without preprocessor.json', async () => {
    await rm(join(folder, 'preprocessor.json'), { force: true });
    const instance = await depthPreprocessor.create({ runtime, modelPath: folder });
    const output = await instance.process(frame, { invert: false }, { width: 24, height: 16, previousOutput: undefined });
    expect(output).toMatchObject({ width: 24, height: 16, channels: 3 });
    // Not the golden: the model saw the frame at 518×518 and ImageNet-normalised, then shrunk.
    expect(greyChannel(output)).not.toEqual(bytes(golden.grey));
    await instance.dispose();
  });
});
