import { z } from 'zod';
import { frameAtSize } from './frame-at-size.js';
import type { PreprocessorDefinition } from './preprocessor.js';

/** The external preprocessor has no parameters. */
export const externalParameters = z.object({});

/** The external preprocessor's parameters (none). */
export type ExternalParameters = z.output<typeof externalParameters>;

/**
 * `external`: the control image comes ready-made from the caller, frame by frame (the ControlNet
 * wrapper hands it over as the image this preprocessor receives); it is only resized to the
 * pipeline's size. Unlike `passthrough`, the image it receives is not the pipeline's input frame.
 */
export const externalPreprocessor: PreprocessorDefinition<ExternalParameters> = {
  name: 'external',
  description: "A control image supplied by the caller each frame, resized to the pipeline's size.",
  parameters: externalParameters,
  usesPreviousOutput: false,
  needsModel: false,
  async create() {
    return {
      async process(image, _parameters, context) {
        return frameAtSize(image, context);
      },
      async dispose() {},
    };
  },
};
