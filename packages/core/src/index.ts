// The public API of @streamdiffusion/core. Everything exported is named here, explicitly.

export { StreamDiffusionError } from './errors/streamdiffusion-error.js';
export {
  DeviceUnavailableError,
  DisposedError,
  InferenceError,
  InvalidArgumentError,
  ModelFolderError,
  TensorInputError,
  type MissingDeviceRequirement,
  type ModelFolderProblem,
} from './errors/errors.js';

export {
  AUTO_DEVICE_ORDER,
  DEVICE_REQUESTS,
  type Device,
  type DeviceCheck,
  type DeviceChoice,
  type DeviceRequest,
} from './runtime/devices.js';
export {
  DTYPES,
  TENSOR_TYPES,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type Dtype,
  type TensorData,
  type TensorType,
} from './runtime/dtypes.js';
export { hostTensor, type HostTensor } from './runtime/host-tensor.js';
export { type ModelSignature, type ValueSignature } from './runtime/model-signature.js';
export {
  createRuntime,
  Runtime,
  RuntimeTensor,
  SessionSet,
  type CombineOptions,
  type CombineTerm,
  type RunOptions,
  type RuntimeOptions,
} from './runtime/runtime.js';
export type { ModelSource, RuntimeStats, SessionSettings, WebGpuSettings } from './runtime/wire.js';

export {
  BETA_SCHEDULES,
  MODEL_COMPONENTS,
  readModelFolder,
  schedulerConfigSchema,
  type ModelComponent,
  type ModelFolder,
  type SchedulerConfig,
  type VaeDescription,
} from './model-folder/model-folder.js';
export { detectCapabilities, type ModelCapabilities } from './model-folder/capabilities.js';
export { TEXT_TOKENS, UNET_INPUTS } from './model-folder/unet-inputs.js';
export { loadModel, type LoadedModel } from './model-folder/load-model.js';
export { createPromptEncoder, type PromptEncoder } from './prompt-encoder/prompt-encoder.js';
export { createClipTokenizer, type ClipTokenizer } from './tokenizer/clip-tokenizer.js';
export { CLIP_MAX_LENGTH } from './tokenizer/read-tokenizer-folder.js';
export { imageToTensor, readImage, resizeImage, tensorToImage, writeImage, type ImageSource, type RgbImage } from './image/image.js';
export {
  createSimilarityFilter,
  type SimilarityDecision,
  type SimilarityFilter,
  type SimilarityFilterOptions,
} from './stream/similarity-filter.js';
export {
  createFrameStream,
  type FrameResult,
  type FrameStream,
  type FrameStreamStats,
  type FrameTiming,
} from './stream/frame-stream.js';
export { FRAME_STAGES, measureStream, movingPattern, type StreamMeasurement } from './stream/measure-stream.js';
export { createRecentCache, type RecentCache } from './cache/recent-cache.js';
export { createTorchGenerator, type TorchGenerator } from './noise/torch-generator.js';
export { torchRandn } from './noise/torch-randn.js';
export {
  createLcmSchedule,
  type LcmBoundaryScalings,
  type LcmSchedule,
  type LcmStreamConstants,
  type LcmStreamOptions,
  type LcmTimestepOptions,
} from './scheduler/lcm-schedule.js';
export {
  addInputNoise,
  CFG_TYPES,
  createSequentialBatch,
  createStreamBatch,
  type CfgType,
  type StepConstants,
  type StreamBatch,
  type StreamBatchSettings,
  type UnetCall,
  type UnetRequest,
} from './pipeline/stream-batch.js';
export {
  createStreamDiffusion,
  type FrameImagesOption,
  type FrameTimings,
  type HotParameters,
  type ReloadParameters,
  type StreamDiffusion,
  type StreamDiffusionOptions,
  type StreamDiffusionResult,
} from './pipeline/stream-diffusion.js';
export type {
  AnyUNetWrapperV1,
  PreparedWrapperUpdateV1,
  UNetWrapperV1,
  WrapperContributionV1,
  WrapperFrameImageV1,
  WrapperFrameV1,
  WrapperModelV1,
  WrapperParameterShape,
  WrapperParametersOf,
  WrapperPipelineV1,
  WrappersParameters,
  WrappersParametersInput,
  WrapperParametersInputOf,
  WrapperUnetCallV1,
} from './wrappers/unet-wrapper-v1.js';
export { ConfigError } from './config/config-error.js';
export { parseArgument, valueAt } from './config/zod-issues.js';
export {
  ACCELERATIONS,
  CONFIG_MODES,
  UNSUPPORTED_CONFIG_KEYS,
  configJsonSchema,
  configToStreamDiffusionOptions,
  loadConfig,
  resolveConfigModelPath,
  saveConfig,
  streamDiffusionConfigSchema,
  type ConfigWarning,
  type ConfigWarningKind,
  type LoadConfigOptions,
  type LoadedConfig,
  type StreamDiffusionConfig,
  type StreamDiffusionConfigInput,
  type WrapperConfigFields,
} from './config/load-config.js';
export {
  INTERPOLATION_METHODS,
  checkScheduleIndices,
  streamParametersSchema,
  streamParametersShape,
  hotParametersShape,
  reloadParametersShape,
  withoutDefaults,
  type ParameterMeta,
  type ParameterUpdate,
  type StreamParameters,
  type StreamParametersInput,
} from './config/stream-parameters.js';
