// The public API of @streamdiffusion/tensorrt. Everything exported is named here, explicitly.

// Files a bundle of this package carries beside its code
export { RUNTIME_FILES } from './package-file.js';

// ONNX files
export { decodeModel, encodeModel, layerWeights, ONNX_TYPES, readModel, type LayerWeight, type OnnxModelProto } from './onnx/onnx-model.js';

// Engines (plans, store, builds, EPContext loading)
export {
  ENGINE_MODEL_KINDS,
  ENGINE_PRECISIONS,
  enginePlanOptionsSchema,
  ipAdapterImageTokensOf,
  onnxSignature,
  parseEnginePlanOptions,
  planEngines,
  RESOLUTION_MODES,
  RESOLUTION_STEP,
  unetBatchRange,
  unetBatchSize,
  type BatchConfig,
  type BatchRange,
  type EngineModelKind,
  type EnginePlan,
  type EnginePlanOptions,
  type EnginePlanOptionsInput,
  type EnginePrecision,
  type InputProfile,
  type PlanEnginesInput,
  type PlannedEngine,
  type ResolutionMode,
  type ResolutionRange,
} from './engines/engine-plan.js';
export {
  createEngineStore,
  defaultEngineStoreFolder,
  EngineLockError,
  engineKey,
  hashFile,
  type BuildEnvironment,
  type EngineKeyParts,
  type EngineMeta,
  type EngineStore,
  type EnsureOptions,
  type LockHolder,
  type LockOptions,
  type PruneOptions,
  type StaleReason,
  type StoredEngine,
} from './engines/engine-store.js';
export {
  buildEngine,
  createProgressParser,
  EngineBuildError,
  findTrtexec,
  plannedEngineKeyParts,
  probeComputeCapability,
  probeTensorrtVersion,
  runTrtexec,
  shapeSpec,
  TENSORRT_INSTALL_URL,
  tensorrtVersionFromBanner,
  trtexecArguments,
  TrtexecNotFoundError,
  type BuildEngineOptions,
  type TrtexecProgress,
  type TrtexecSettings,
} from './engines/trtexec.js';
export {
  buildEngines,
  describeBuildReport,
  GpuNotFoundError,
  shellLine,
  type BuildEnginesOptions,
  type BuildEnginesReport,
  type BuiltEngineReport,
  type PlannedEngineReport,
} from './engines/build-engines.js';
export {
  EngineRefitError,
  parseRefitLine,
  refitArguments,
  refitEngine,
  TensorrtPythonNotFoundError,
  type RefitEngineOptions,
  type RefitEvent,
} from './engines/refit.js';
export {
  EP_CONTEXT_FILE,
  EP_CONTEXT_SOURCE,
  epContextModel,
  loadEngineSession,
  writeEpContextModel,
  type EngineSession,
  type EpContextModelOptions,
  type LoadEngineSessionOptions,
} from './engines/ep-context.js';

// LoRA
export { createHotLora, createLoraMerger, loraEntrySchema, lorasSchema, loraSetHash, type HotLora, type LoraApplyReport, type LoraEntry, type LoraMerge, type LoraMerger, type LoraOptions } from './lora/hot-lora.js';
export { LORA_COMPONENTS, matchLora, type LoraComponent, type LoraLayer, type LoraMatch } from './lora/lora-keys.js';
export { mergeInto, type ScaledLayer } from './lora/lora-merge.js';
export { LoraFileError, parseSafetensors, readSafetensors, type Safetensors, type SafetensorsTensor } from './lora/safetensors.js';
export { loraConfigFields, lorasFromConfig } from './lora/lora-config.js';
