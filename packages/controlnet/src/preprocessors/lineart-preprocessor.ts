import type { z } from 'zod';
import { invertParameters, onnxGreyPreprocessor, type OnnxModelDefaults } from './onnx-preprocessor-model.js';
import type { PreprocessorDefinition } from './preprocessor.js';

/** The lineart preprocessor's parameters. */
export const lineartParameters = invertParameters(
  'Flip black and white: for models that draw dark lines on white (informative-drawings lineart), as ControlNets expect white lines on black.',
);

/** The lineart preprocessor's parameters, validated. */
export type LineartParameters = z.output<typeof lineartParameters>;

/** Line and soft-edge models (informative-drawings, HED, PiDiNet) take 512×512 pixels in 0..1. */
const LINEART_DEFAULTS: OnnxModelDefaults = {
  inputSize: 512,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  outputRange: [0, 1],
};

/**
 * Model values → 0..255 through the model's output range `[low, high]` (default [0, 1]):
 * `round(clamp((v − low) / (high − low), 0, 1) · 255)`.
 */
function scaledLines(values: Float32Array, outputRange: readonly [number, number]): Uint8Array {
  const [low, high] = outputRange;
  const grey = new Uint8Array(values.length);
  for (let index = 0; index < values.length; index += 1) {
    const unit = Math.min(Math.max((values[index]! - low) / (high - low), 0), 1);
    grey[index] = Number.isNaN(unit) ? 0 : Math.round(unit * 255);
  }
  return grey;
}

/**
 * `lineart` (soft edges): a line-drawing or soft-edge model (informative-drawings lineart, HED,
 * PiDiNet… exported to ONNX) run in the pipeline's runtime; its output scaled from its output range
 * to 0..255, resized to the pipeline's size, grey in all three channels. Needs `modelPath`: see
 * `loadOnnxPreprocessorModel` for the folder layout and `preprocessor.json` (default input
 * 512×512, pixels in 0..1, output range [0, 1]).
 */
export const lineartPreprocessor: PreprocessorDefinition<LineartParameters> = onnxGreyPreprocessor({
  name: 'lineart',
  description: 'Lines or soft edges from an ONNX line-drawing model (lineart, HED, PiDiNet…), scaled to 0..255.',
  parameters: lineartParameters,
  defaults: LINEART_DEFAULTS,
  toGrey: (values, model) => scaledLines(values, model.outputRange),
});
