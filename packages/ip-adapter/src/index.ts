// The public API of @streamdiffusion/ip-adapter. Everything exported is named here, explicitly.

export { createIpAdapter, type IpAdapterOptions, type IpAdapterWrapper } from './ip-adapter-wrapper.js';
export { ipAdapterConfigFields, ipAdapterFromConfig } from './ip-adapter-config.js';
export {
  ipAdapterEntrySchema,
  ipAdaptersField,
  styleImagesOf,
  type IpAdapterEntry,
  type IpAdapterEntryInput,
  type IpAdapterParameters,
  type StyleImageKinds,
} from './ip-adapter-parameters.js';
export { STEP_SCHEDULES, WEIGHT_TYPES, layerBlock, layerWeights, needsSdLayout, stepFactor, type LayerBlock, type StepSchedule, type WeightType } from './weight-types.js';
export { clipPixelValues, readClipPreprocessing, type ClipPreprocessing, type StyleImageSource } from './clip-image.js';
export { findAdapterFiles, readUnetIpAdapter, type AdapterFiles, type ProjectionConfig, type UnetIpAdapterConfig } from './adapter-folder.js';
