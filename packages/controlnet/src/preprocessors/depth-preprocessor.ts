import type { z } from 'zod';
import { invertParameters, onnxGreyPreprocessor, type OnnxModelDefaults } from './onnx-preprocessor-model.js';
import type { PreprocessorDefinition } from './preprocessor.js';

/** The depth preprocessor's parameters. */
export const depthParameters = invertParameters(
  'Flip black and white: for models that output distance (far = large) rather than relative inverse depth (near = large), as depth ControlNets expect near = white.',
);

/** The depth preprocessor's parameters, validated. */
export type DepthParameters = z.output<typeof depthParameters>;

/** Depth Anything's input: 518 (a multiple of its 14-pixel patches), ImageNet mean and std. */
const DEPTH_DEFAULTS: OnnxModelDefaults = {
  inputSize: 518,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  outputRange: [0, 1],
};

/**
 * Model values → 0..255 by the frame's own range: `round((v − min) / (max − min) · 255)`, or 0
 * everywhere when the frame is flat.
 */
function normalisedDepth(values: Float32Array): Uint8Array {
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const span = max - min;
  const grey = new Uint8Array(values.length);
  for (let index = 0; index < values.length; index += 1) {
    grey[index] = span > 0 && Number.isFinite(span) ? Math.round(((values[index]! - min) / span) * 255) : 0;
  }
  return grey;
}

/**
 * `depth`: a monocular depth model (Depth Anything, MiDaS… exported to ONNX) run in the pipeline's
 * runtime; its output normalised per frame to 0..255 (near = white), resized to the pipeline's
 * size, grey in all three channels. Needs `modelPath`: see `loadOnnxPreprocessorModel` for the
 * folder layout and `preprocessor.json` (default input 518×518, ImageNet mean and std).
 */
export const depthPreprocessor: PreprocessorDefinition<DepthParameters> = onnxGreyPreprocessor({
  name: 'depth',
  description: 'Depth from an ONNX depth model (Depth Anything, MiDaS…), normalised per frame: near is white.',
  parameters: depthParameters,
  defaults: DEPTH_DEFAULTS,
  toGrey: (values) => normalisedDepth(values),
});
