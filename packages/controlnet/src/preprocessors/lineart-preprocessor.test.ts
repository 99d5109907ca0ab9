import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelFolderError, createRuntime, type Runtime } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, greyChannel, onnxGolden, PREPROCESSOR_FIXTURES } from '../../test-support/onnx-goldens.js';
import { lineartPreprocessor } from './lineart-preprocessor.js';

const fixtures = PREPROCESSOR_FIXTURES;
const { golden, frame } = await onnxGolden('lineart');
const modelFile = join(fixtures, 'lineart', 'model.onnx');
const context = { width: 32, height: 32, previousOutput: undefined };

describe('lineart (tiny random-weight model)', () => {
  let runtime: Runtime;
  let folder: string;
  beforeAll(async () => {
    runtime = await createRuntime({ device: 'cpu' });
    folder = await mkdtemp(join(tmpdir(), 'lineart-preprocessor-'));
  });
  afterAll(async () => {
    await runtime.dispose();
    await rm(folder, { recursive: true, force: true });
  });

  it('needs a model and defaults invert to false', () => {
    expect(lineartPreprocessor.needsModel).toBe(true);
    expect(lineartPreprocessor.parameters.parse({})).toEqual({ invert: false });
  });

  it("runs an .onnx file at its fixed input size, gives Python onnxruntime's output × 255 (and inverted), and disposes", async () => {
    expect(golden.output_dims).toEqual([1, 1, 32, 32]);
    const before = (await runtime.stats()).sessions;
    const instance = await lineartPreprocessor.create({ runtime, modelPath: modelFile });
    expect((await runtime.stats()).sessions).toBe(before + 1);
    const output = await instance.process(frame, { invert: false }, context);
    expect(output).toMatchObject({ width: 32, height: 32, channels: 3 });
    expect(greyChannel(output)).toEqual(bytes(golden.grey));
    expect(greyChannel(await instance.process(frame, { invert: true }, context))).toEqual(bytes(golden.grey_inverted));
    // Another frame size and pipeline size: resized in (to the model's 32×32) and out.
    const wide = await instance.process({ data: new Uint8Array(80 * 20 * 3).fill(128), width: 80, height: 20, channels: 3 }, { invert: false }, {
      width: 48,
      height: 24,
      previousOutput: undefined,
    });
    expect(wide).toMatchObject({ width: 48, height: 24, channels: 3 });
    greyChannel(wide);
    await instance.dispose();
    expect((await runtime.stats()).sessions).toBe(before);
  });

  it("maps preprocessor.json's output_range to black and white", async () => {
    await copyFile(modelFile, join(folder, 'model.onnx'));
    await writeFile(join(folder, 'preprocessor.json'), JSON.stringify({ output_range: [0.2, 0.8] }));
    const instance = await lineartPreprocessor.create({ runtime, modelPath: folder });
    const output = await instance.process(frame, { invert: false }, context);
    await instance.dispose();
    const raw = new Float32Array(new Uint8Array(Buffer.from(golden.output, 'base64')).buffer);
    const expected = Array.from(raw, (value) => Math.round(Math.min(Math.max((value - 0.2) / 0.6, 0), 1) * 255));
    expect(greyChannel(output)).toEqual(expected);
    expect(expected).toContain(0);
    expect(expected).toContain(255);
  });

  it("rejects an input_size that contradicts the model's fixed input dims", async () => {
    await writeFile(join(folder, 'preprocessor.json'), JSON.stringify({ input_size: 512 }));
    const error = await lineartPreprocessor.create({ runtime, modelPath: folder }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as Error).message).toMatch(/512×512 differs from the model's fixed input 32×32/);
  });

  it('refuses a model that does not take one [1, 3, H, W] image, and keeps no session loaded', async () => {
    const before = (await runtime.stats()).sessions;
    const error = await lineartPreprocessor
      .create({ runtime, modelPath: join(fixtures, 'not-an-image-model.onnx') })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as ModelFolderError).problem).toBe('bad-signature');
    expect((error as Error).message).toMatch(/takes one float \[1, 3, H, W\] input/);
    expect((await runtime.stats()).sessions).toBe(before);
  });
});
