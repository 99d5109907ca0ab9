import { z } from 'zod';
import { frameAtSize } from './frame-at-size.js';
import type { PreprocessorDefinition } from './preprocessor.js';

/** The passthrough preprocessor has no parameters. */
export const passthroughParameters = z.object({});

/** The passthrough preprocessor's parameters (none). */
export type PassthroughParameters = z.output<typeof passthroughParameters>;

/** `passthrough`: the frame itself as the control image, resized to the pipeline's size. */
export const passthroughPreprocessor: PreprocessorDefinition<PassthroughParameters> = {
  name: 'passthrough',
  description: "The frame itself as the control image, resized to the pipeline's size.",
  parameters: passthroughParameters,
  usesPreviousOutput: false,
  needsModel: false,
  async create() {
    return {
      async process(frame, _parameters, context) {
        return frameAtSize(frame, context);
      },
      async dispose() {},
    };
  },
};
