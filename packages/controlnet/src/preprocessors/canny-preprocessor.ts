import { z } from 'zod';
import { cannyEdges } from './canny-edges.js';
import { frameAtSize } from './frame-at-size.js';
import { greyToRgb, rgbToGrey } from './grey-image.js';
import type { PreprocessorDefinition } from './preprocessor.js';
import { hotParameter } from './preprocessor-parameters.js';

const THRESHOLD_RANGE = 'an integer from 0 to 255';

function threshold(fallback: number, description: string) {
  return hotParameter(
    z.int({ error: THRESHOLD_RANGE }).min(0, { error: THRESHOLD_RANGE }).max(255, { error: THRESHOLD_RANGE }).default(fallback),
    description,
  );
}

/** The canny preprocessor's parameters (the Python forks' names); `low_threshold` ≤ `high_threshold`. */
export const cannyParameters = z
  .object({
    low_threshold: threshold(
      100,
      'Hysteresis low threshold on the L1 gradient magnitude (integer 0–255, at most high_threshold): weaker pixels are never edges; lower finds more edges.',
    ),
    high_threshold: threshold(
      200,
      'Hysteresis high threshold on the L1 gradient magnitude (integer 0–255, at least low_threshold): stronger pixels start edges, which extend through pixels above low_threshold.',
    ),
  })
  .superRefine((value, context) => {
    if (value.low_threshold > value.high_threshold) {
      context.addIssue({
        code: 'custom',
        path: ['low_threshold'],
        input: value.low_threshold,
        message: `at most high_threshold (${value.high_threshold})`,
      });
    }
  });

/** The canny preprocessor's parameters, validated. */
export type CannyParameters = z.output<typeof cannyParameters>;

/**
 * `canny`: the frame at the pipeline's size, grey as OpenCV converts it, then OpenCV's Canny
 * (3×3 Sobel, L1 magnitude) — the same edges as the Python forks' `cv2.Canny`, bit for bit. White
 * edges on black, in all three channels.
 */
export const cannyPreprocessor: PreprocessorDefinition<CannyParameters> = {
  name: 'canny',
  description: "Canny edges (OpenCV's cv2.Canny, bit for bit): white edges on black.",
  parameters: cannyParameters,
  usesPreviousOutput: false,
  needsModel: false,
  async create() {
    return {
      async process(frame, parameters, context) {
        const resized = await frameAtSize(frame, context);
        const edges = cannyEdges({
          grey: rgbToGrey(resized),
          width: resized.width,
          height: resized.height,
          lowThreshold: parameters.low_threshold,
          highThreshold: parameters.high_threshold,
        });
        return greyToRgb(edges, resized);
      },
      async dispose() {},
    };
  },
};
