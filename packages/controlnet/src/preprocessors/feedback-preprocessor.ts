import { resizeImage, type RgbImage } from '@streamdiffusion/core';
import { z } from 'zod';
import { frameAtSize } from './frame-at-size.js';
import type { PreprocessorDefinition } from './preprocessor.js';
import { hotParameter } from './preprocessor-parameters.js';

const STRENGTH_RANGE = 'a number from 0 to 1';

/** The feedback preprocessor's parameters (the Python forks' names). */
export const feedbackParameters = z.object({
  feedback_strength: hotParameter(
    z.number({ error: STRENGTH_RANGE }).min(0, { error: STRENGTH_RANGE }).max(1, { error: STRENGTH_RANGE }).default(0.5),
    "Weight of the pipeline's previous output in the blend (0–1): 0 is the input frame only, 1 the previous output only.",
  ),
});

/** The feedback preprocessor's parameters, validated. */
export type FeedbackParameters = z.output<typeof feedbackParameters>;

/**
 * Per channel, `round((1 − strength) · frame + strength · previous)` (halves round up); both
 * images RGB at the same size.
 */
export function blendImages(frame: RgbImage, previous: RgbImage, strength: number): RgbImage {
  const data = new Uint8Array(frame.data.length);
  for (let index = 0; index < data.length; index += 1) {
    data[index] = Math.round((1 - strength) * frame.data[index]! + strength * previous.data[index]!);
  }
  return { data, width: frame.width, height: frame.height, channels: 3 };
}

/**
 * `feedback`: the frame blended with the pipeline's previous output, a feedback loop in which each
 * output steers the next. Before the first output, the frame alone.
 */
export const feedbackPreprocessor: PreprocessorDefinition<FeedbackParameters> = {
  name: 'feedback',
  description: "The frame blended with the pipeline's previous output (feedback_strength 0: the frame, 1: the previous output).",
  parameters: feedbackParameters,
  usesPreviousOutput: true,
  needsModel: false,
  async create() {
    return {
      async process(frame, parameters, context) {
        const input = await frameAtSize(frame, context);
        if (context.previousOutput === undefined) return input;
        const previous = await resizeImage(context.previousOutput, context);
        return blendImages(input, previous, parameters.feedback_strength);
      },
      async dispose() {},
    };
  },
};
