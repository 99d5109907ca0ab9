import { StreamDiffusionError } from './streamdiffusion-error.js';

/** What a device lacks, as far as we could tell. */
export type MissingDeviceRequirement =
  | 'provider-libraries'
  | 'vulkan-loader'
  | 'gpu-adapter'
  | 'unsupported-platform'
  | 'unknown';

/** The requested execution device cannot run on this machine. */
export class DeviceUnavailableError extends StreamDiffusionError {
  readonly device: string;
  readonly missing: MissingDeviceRequirement;

  constructor(options: { device: string; missing: MissingDeviceRequirement; message: string; cause?: unknown }) {
    super({ code: 'device-unavailable', message: options.message, cause: options.cause });
    this.device = options.device;
    this.missing = options.missing;
  }
}

/** An input tensor does not match what the model declares (name, element type or dims). */
export class TensorInputError extends StreamDiffusionError {
  readonly model: string;
  readonly input: string;
  readonly expected: string;
  readonly actual: string;

  constructor(options: { model: string; input: string; expected: string; actual: string; message?: string }) {
    super({
      code: 'tensor-input',
      message:
        options.message ??
        `model "${options.model}", input "${options.input}": expected ${options.expected}, got ${options.actual}`,
    });
    this.model = options.model;
    this.input = options.input;
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

/** Why a model folder could not be used. */
export type ModelFolderProblem =
  | 'missing-file'
  | 'corrupt-model'
  | 'unloadable-model'
  | 'bad-signature'
  | 'bad-config'
  | 'unknown-beta-schedule'
  | 'missing-tokenizer-file';

/** A model folder is missing something or holds something we cannot use; `path` says where. */
export class ModelFolderError extends StreamDiffusionError {
  readonly problem: ModelFolderProblem;
  readonly path: string;

  constructor(options: { problem: ModelFolderProblem; path: string; message: string; cause?: unknown }) {
    super({ code: 'model-folder', message: `${options.message} (${options.path})`, cause: options.cause });
    this.problem = options.problem;
    this.path = options.path;
  }
}

/** A model failed while running (after its inputs were checked). */
export class InferenceError extends StreamDiffusionError {
  readonly model: string;

  constructor(options: { model: string; message: string; cause?: unknown }) {
    super({ code: 'inference', message: `model "${options.model}": ${options.message}`, cause: options.cause });
    this.model = options.model;
  }
}

/** Something was used after its `dispose()`. */
export class DisposedError extends StreamDiffusionError {
  constructor(what: string) {
    super({ code: 'disposed', message: `${what} was used after dispose()` });
  }
}

/** Bad options given to a public function, named by field. */
export class InvalidArgumentError extends StreamDiffusionError {
  readonly field: string;

  constructor(options: { field: string; value: unknown; expected: string }) {
    super({
      code: 'invalid-argument',
      message: `${options.field}: expected ${options.expected}, got ${formatValue(options.value)}`,
    });
    this.field = options.field;
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
