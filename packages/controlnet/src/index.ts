// The public API of @streamdiffusion/controlnet. Everything exported is named here, explicitly.

export { createControlNet, RESIDUAL_INPUTS, type ControlNetOptions, type ControlNetWrapper } from './controlnet-wrapper.js';
export { controlNetConfigFields, controlNetFromConfig } from './controlnet-config.js';
export {
  controlNetEntrySchema,
  type ControlNetEntry,
  type ControlNetEntryInput,
  type ControlNetParameters,
} from './controlnet-parameters.js';
export type {
  AnyPreprocessorDefinition,
  PreprocessContext,
  PreprocessorDefinition,
  PreprocessorInstance,
  PreprocessorSetup,
} from './preprocessors/preprocessor.js';
export { PREPROCESSORS, PREPROCESSOR_NAMES, preprocessorNamed, type PreprocessorName } from './preprocessors/preprocessors.js';
export { parsePreprocessorParameters } from './preprocessors/preprocessor-parameters.js';
export { cannyPreprocessor, cannyParameters, type CannyParameters } from './preprocessors/canny-preprocessor.js';
export { depthPreprocessor, depthParameters, type DepthParameters } from './preprocessors/depth-preprocessor.js';
export { externalPreprocessor, externalParameters, type ExternalParameters } from './preprocessors/external-preprocessor.js';
export { feedbackPreprocessor, feedbackParameters, type FeedbackParameters } from './preprocessors/feedback-preprocessor.js';
export { lineartPreprocessor, lineartParameters, type LineartParameters } from './preprocessors/lineart-preprocessor.js';
export { passthroughPreprocessor, passthroughParameters, type PassthroughParameters } from './preprocessors/passthrough-preprocessor.js';
export { cannyEdges, type CannyEdgesOptions } from './preprocessors/canny-edges.js';
