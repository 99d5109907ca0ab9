const marker = Symbol.for('@streamdiffusion/error');

/**
 * Base class of every error this project raises. `isInstance` works across duplicated installs
 * (two copies of the package in one process), where `instanceof` would not.
 */
export class StreamDiffusionError extends Error {
  private readonly [marker] = true;

  /** A stable machine-readable name for the kind of failure, e.g. `device-unavailable`. */
  readonly code: string;

  constructor(options: { code: string; message: string; cause?: unknown }) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
  }

  /** True for errors of this project, whichever copy of the package made them. */
  static isInstance(error: unknown): error is StreamDiffusionError {
    return typeof error === 'object' && error !== null && marker in error;
  }
}
