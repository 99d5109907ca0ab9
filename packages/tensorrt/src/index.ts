// The public API of @streamdiffusion/tensorrt. Everything exported is named here, explicitly.

// ONNX files
export { decodeModel, encodeModel, layerWeights, ONNX_TYPES, readModel, type LayerWeight, type OnnxModelProto } from './onnx/onnx-model.js';

// Engines (plans, store, builds, EPContext loading)

// LoRA
