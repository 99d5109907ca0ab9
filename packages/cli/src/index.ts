// The public API of @streamdiffusion/cli: the command as a function, for embedding and tests.

export { createProgram, run } from './program.js';
export { CliError, EXIT_CODES, type Io } from './io.js';
export { commanderOptions, flagValues, kebab, schemaFlags, FlagValueError, type FlagKind, type SchemaFlag } from './flags.js';
export { PARAMETER_FLAGS, WRAPPER_CONFIG_FIELDS, openModel, openPipeline, resolveConfig, withPipelineFlags, type OpenModel, type OpenPipeline } from './pipeline-options.js';
export { startServer, type StreamServer } from './server.js';
