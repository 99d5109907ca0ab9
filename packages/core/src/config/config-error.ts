import { StreamDiffusionError } from '../errors/streamdiffusion-error.js';

/**
 * A config file cannot be used: unreadable, not YAML/JSON, a value that fails the schema, or a
 * `model_id` that resolves to no folder. The message starts `file:line: key:` so editors and
 * terminals can jump to it; the fields carry the same for code.
 */
export class ConfigError extends StreamDiffusionError {
  /** The config file, as given. */
  readonly file: string;
  /** 1-based line of the offending key or value; undefined when the file has no such line (a missing key). */
  readonly line: number | undefined;
  /** Dotted path of the offending key (`t_index_list.1`); undefined for file-level problems. */
  readonly key: string | undefined;

  constructor(options: { file: string; line?: number; key?: string; message: string; cause?: unknown }) {
    const where = options.line === undefined ? options.file : `${options.file}:${options.line}`;
    const key = options.key === undefined ? '' : ` ${options.key}:`;
    super({ code: 'config', message: `${where}:${key} ${options.message}`, cause: options.cause });
    this.file = options.file;
    this.line = options.line;
    this.key = options.key;
  }
}
