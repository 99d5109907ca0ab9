// The public API of @streamdiffusion/comfy-nodes. Everything exported is named here, explicitly.

export { nodeCatalogue, SOCKET_TYPES, type InputSpec, type NodeAction, type NodeSpec, type OutputSpec } from './catalogue/node-catalogue.js';
export { expectedObjectInfo, objectInfoNodeSchema, type ObjectInfoNode } from './catalogue/object-info.js';
export { PROTOCOL_VERSION, schemaHash } from './catalogue/schema-hash.js';
export { renderInitPy, renderNodesPy, renderPyproject, type PackMetadata } from './generator/render-python.js';
export { decodeMessages, encodeMessage, type Message } from './sidecar/protocol.js';
export { createSidecarService, handleOf, RequestError, UnknownHandleError, type LoadRequest, type SidecarService } from './sidecar/service.js';
export { generatePack, PACK_NAME, type GeneratedPack, type GenerateOptions } from './generator/generate-pack.js';
export { installPack, linkSidecarModules, npmInstallSidecar, SIDECAR_NATIVE_PACKAGES, type InstallOptions } from './generator/install-pack.js';
