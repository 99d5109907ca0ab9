import { InvalidArgumentError, type RgbImage, type Runtime } from '@streamdiffusion/core';
import { describe, expect, it } from 'vitest';
import { feedbackPreprocessor } from './feedback-preprocessor.js';
import { parsePreprocessorParameters } from './preprocessor-parameters.js';

const setup = { runtime: undefined as unknown as Runtime };

function image(width: number, height: number, pixel: (index: number) => number): RgbImage {
  return { data: Uint8Array.from({ length: width * height * 3 }, (_, index) => pixel(index)), width, height, channels: 3 };
}

describe('feedback', () => {
  it('uses the previous output and says so', () => {
    expect(feedbackPreprocessor.usesPreviousOutput).toBe(true);
    expect(feedbackPreprocessor.needsModel).toBe(false);
  });

  it('blends round((1 - s) · frame + s · previous) per channel', async () => {
    const frame = image(4, 2, (index) => (index * 11) % 256);
    const previous = image(4, 2, (index) => 255 - ((index * 7) % 256));
    const instance = await feedbackPreprocessor.create(setup);
    for (const strength of [0, 0.25, 0.5, 0.8, 1]) {
      const output = await instance.process(frame, { feedback_strength: strength }, { width: 4, height: 2, previousOutput: previous });
      expect(output).toMatchObject({ width: 4, height: 2, channels: 3 });
      const expected = Array.from(frame.data, (value, index) => Math.round((1 - strength) * value + strength * previous.data[index]!));
      expect(Array.from(output.data)).toEqual(expected);
    }
    await instance.dispose();
  });

  it('gives the frame at strength 0, the previous output at 1, and rounds halves up', async () => {
    const frame = image(2, 1, () => 10);
    const previous = image(2, 1, () => 21);
    const instance = await feedbackPreprocessor.create(setup);
    const context = { width: 2, height: 1, previousOutput: previous };
    expect(Array.from((await instance.process(frame, { feedback_strength: 0 }, context)).data)).toEqual([10, 10, 10, 10, 10, 10]);
    expect(Array.from((await instance.process(frame, { feedback_strength: 1 }, context)).data)).toEqual([21, 21, 21, 21, 21, 21]);
    // 0.5 · 10 + 0.5 · 21 = 15.5 → 16.
    expect(Array.from((await instance.process(frame, { feedback_strength: 0.5 }, context)).data)).toEqual([16, 16, 16, 16, 16, 16]);
  });

  it('gives the frame (resized, in a buffer of its own) before the first output', async () => {
    const frame = image(3, 3, (index) => index);
    const instance = await feedbackPreprocessor.create(setup);
    const output = await instance.process(frame, { feedback_strength: 0.9 }, { width: 3, height: 3, previousOutput: undefined });
    expect(Array.from(output.data)).toEqual(Array.from(frame.data));
    expect(output.data).not.toBe(frame.data);
    const resized = await instance.process(frame, { feedback_strength: 0.9 }, { width: 6, height: 4, previousOutput: undefined });
    expect(resized).toMatchObject({ width: 6, height: 4, channels: 3 });
    expect(resized.data).toHaveLength(6 * 4 * 3);
  });

  it('defaults feedback_strength to 0.5 and rejects values outside 0..1, naming field, value and range', () => {
    expect(feedbackPreprocessor.parameters.parse({})).toEqual({ feedback_strength: 0.5 });
    for (const value of [-0.1, 1.5, 'strong']) {
      let caught: unknown;
      try {
        parsePreprocessorParameters(feedbackPreprocessor, { feedback_strength: value });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(InvalidArgumentError);
      expect((caught as InvalidArgumentError).field).toBe('preprocessor_params.feedback_strength');
      expect((caught as Error).message).toContain(`got ${JSON.stringify(value)}`);
      expect((caught as Error).message).toContain('a number from 0 to 1');
    }
  });
});
