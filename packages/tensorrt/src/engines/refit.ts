/**
 * LoRA on TensorRT without a rebuild: a refittable UNet engine (built with `refittable: true`) gets
 * the weights of the UNet with a LoRA set merged in, through TensorRT's ONNX refitter
 * (`python/refit_engine.py`, TensorRT's Python package ≥ 10.0). The refitted engine is stored under
 * its own key (the base engine's parts plus the LoRA set's hash), so switching back and forth
 * between LoRA sets costs one refit each the first time and nothing after.
 */
import { copyFile, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, StreamDiffusionError, type Runtime } from '@streamdiffusion/core';
import { createLoraMerger, loraSetHash, type LoraEntry } from '../lora/hot-lora.js';
import { packageFile } from '../package-file.js';
import type { EngineStore, LockOptions, StoredEngine } from './engine-store.js';
import { EP_CONTEXT_FILE, writeEpContextModel } from './ep-context.js';
import { runLines } from './run-lines.js';
import { TENSORRT_INSTALL_URL } from './trtexec.js';

/** The refit script's exit code when TensorRT's Python package cannot be imported. */
const TENSORRT_MISSING = 3;

/** Python cannot import TensorRT's package (or there is no Python). */
export class TensorrtPythonNotFoundError extends StreamDiffusionError {
  constructor(options: { python: string; detail: string }) {
    super({
      code: 'tensorrt-python-not-found',
      message: `refitting needs TensorRT's Python package (tensorrt 10.0 or newer) for ${options.python}: ${options.detail}. Install TensorRT with its Python wheel (${TENSORRT_INSTALL_URL}), or name another Python with STREAMDIFFUSION_PYTHON.`,
    });
  }
}

/** The refit ran and failed; the message is the script's (or its output's tail). */
export class EngineRefitError extends StreamDiffusionError {
  readonly engine: string;
  constructor(options: { engine: string; message: string }) {
    super({ code: 'engine-refit', message: `refitting the ${options.engine} engine failed: ${options.message}` });
    this.engine = options.engine;
  }
}

/** The Python a refit runs: the one given, else $STREAMDIFFUSION_PYTHON, else python3. */
export const refitPython = (python: string | undefined): string => python ?? process.env.STREAMDIFFUSION_PYTHON ?? 'python3';

/** The refit script's command line (after the Python executable). */
export function refitArguments(options: { readonly engine: string; readonly onnx: string; readonly output: string; readonly script?: string }): string[] {
  return [options.script ?? packageFile(join('python', 'refit_engine.py')), `--engine=${options.engine}`, `--onnx=${options.onnx}`, `--output=${options.output}`];
}

/** One line of the script's output, read: `{"event": …}` objects; other lines (TensorRT's own log) are kept as text. */
export type RefitEvent =
  | { readonly event: 'loaded'; readonly weights: number; readonly seconds: number }
  | { readonly event: 'refitted'; readonly seconds: number }
  | { readonly event: 'saved'; readonly bytes: number }
  | { readonly event: 'error'; readonly message: string };

export function parseRefitLine(line: string): RefitEvent | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(line) as { event?: unknown };
    return ['loaded', 'refitted', 'saved', 'error'].includes(String(parsed.event)) ? (parsed as RefitEvent) : undefined;
  } catch {
    return undefined;
  }
}

/** What {@link refitEngine} needs. */
export interface RefitEngineOptions extends LockOptions {
  /** The base engine: a refittable UNet engine of the model's own weights, from the store. */
  readonly engine: StoredEngine;
  /** The LoRA set to put into it (the same entries hot LoRA takes). */
  readonly loras: readonly LoraEntry[];
  readonly store: EngineStore;
  /** The Python with TensorRT's package (default: $STREAMDIFFUSION_PYTHON, else python3). */
  readonly python?: string;
  /** Progress, one line at a time. */
  readonly onProgress?: (line: string) => void;
  /**
   * Where the LoRA merge's arithmetic runs (see `LoraOptions.runtime`): onnxruntime's threaded CPU
   * kernels are about five times faster than JavaScript on a full-size UNet. Without one, the merge
   * runs in JavaScript on this thread. The caller owns it (refitEngine does not dispose it).
   */
  readonly runtime?: Runtime;
}

const invalid = (engine: StoredEngine, expected: string): InvalidArgumentError => new InvalidArgumentError({ field: 'engine', value: engine.key, expected });

/**
 * The base engine refitted with a LoRA set, from the store when it is there; an empty set is the
 * base engine itself.
 * @throws {InvalidArgumentError} when the engine is not a refittable, fresh UNet engine of the model's own weights.
 * @throws {TensorrtPythonNotFoundError} when Python cannot import TensorRT.
 * @throws {EngineRefitError} when TensorRT refuses the weights.
 */
export async function refitEngine(options: RefitEngineOptions): Promise<StoredEngine & { readonly built: boolean }> {
  const { engine, store } = options;
  const meta = engine.meta;
  const progress = options.onProgress ?? (() => undefined);
  if (meta === undefined) throw invalid(engine, 'a stored engine with a readable meta.json');
  if (meta.kind !== 'unet') throw invalid(engine, `the UNet engine (LoRAs change the UNet; this one is ${meta.name})`);
  if (meta.refittable !== true) throw invalid(engine, 'a refittable engine (build-engines --refit, or refittable: true)');
  if (meta.loraHash !== null) throw invalid(engine, 'an engine of the model’s own weights (this one has a LoRA set in it: refit its base engine)');
  if (engine.stale.length > 0) throw invalid(engine, `an engine that still fits (${engine.stale.map((stale) => stale.message).join('; ')})`);
  if (options.loras.length === 0) return { ...engine, built: false };

  const loraHash = await loraSetHash(options.loras);
  const python = refitPython(options.python);
  return await store.ensure({
    // The base engine's key parts with the LoRA set's hash: the same ONNX file, profiles and machine.
    meta: {
      onnxSha256: meta.onnxSha256,
      loraHash,
      precision: meta.precision,
      inputs: meta.inputs,
      computeCapability: meta.computeCapability,
      tensorrtVersion: meta.tensorrtVersion,
      refittable: true,
      name: meta.name,
      kind: meta.kind,
      onnx: meta.onnx,
    },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.onWait === undefined ? {} : { onWait: options.onWait }),
    build: async (enginePath) => {
      // The merged UNet, written beside links to the original's external data files.
      const merger = await createLoraMerger({ unet: meta.onnx.path }, { log: progress, ...(options.runtime === undefined ? {} : { runtime: options.runtime }) });
      const merged = (await merger.merge(options.loras)).sources.unet;
      const folder = join(store.folder, `.refit-${process.pid}-${randomBytes(4).toString('hex')}`);
      await mkdir(folder, { recursive: true });
      try {
        let onnx = meta.onnx.path;
        if (merged?.bytes !== undefined) {
          onnx = join(folder, basename(meta.onnx.path));
          await writeFile(onnx, merged.bytes);
          for (const name of await readdir(dirname(meta.onnx.path))) if (name !== basename(meta.onnx.path)) await symlink(join(dirname(meta.onnx.path), name), join(folder, name));
        }
        await runRefit({ python, args: refitArguments({ engine: engine.enginePath, onnx, output: enginePath }), engine: meta.name, progress });
        await copyWrapper({ base: engine, enginePath, onnx: meta.onnx.path, computeCapability: meta.computeCapability });
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    },
  });
}

/**
 * The refitted engine's EPContext wrapper: the base engine's, copied. A wrapper holds the engine's
 * file name (relative to its folder), the ONNX file's name, inputs and outputs, and the compute
 * capability, all the same for a refit of that engine; writing it afresh would decode the whole
 * UNet (gigabytes) for nothing. A base engine stored without one gets it written.
 */
async function copyWrapper(options: { readonly base: StoredEngine; readonly enginePath: string; readonly onnx: string; readonly computeCapability: string }): Promise<void> {
  const output = join(dirname(options.enginePath), EP_CONTEXT_FILE);
  if (basename(options.enginePath) === basename(options.base.enginePath)) {
    try {
      await copyFile(join(options.base.folder, EP_CONTEXT_FILE), output);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  await writeEpContextModel({ onnx: options.onnx, engine: options.enginePath, output, computeCapability: options.computeCapability });
}

/** Runs the refit script, turning its events into progress lines and its failures into typed errors. */
async function runRefit(options: { readonly python: string; readonly args: readonly string[]; readonly engine: string; readonly progress: (line: string) => void }): Promise<void> {
  const { engine, progress } = options;
  let failure: string | undefined;
  const onLine = (line: string): void => {
    const event = parseRefitLine(line);
    if (event?.event === 'error') failure = event.message;
    else if (event?.event === 'loaded') progress(`${engine}: engine loaded (${event.weights} refittable weights) in ${event.seconds} s`);
    else if (event?.event === 'refitted') progress(`${engine}: refitted in ${event.seconds} s`);
    else if (event?.event === 'saved') progress(`${engine}: saved (${(event.bytes / 1024 / 1024).toFixed(1)} MB)`);
  };
  let outcome;
  try {
    outcome = await runLines(options.python, options.args, onLine, 20);
  } catch (error) {
    throw new TensorrtPythonNotFoundError({ python: options.python, detail: `it cannot be run (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` });
  }
  if (outcome.code === TENSORRT_MISSING) throw new TensorrtPythonNotFoundError({ python: options.python, detail: failure ?? outcome.tail.replaceAll('\n', ' | ') });
  if (outcome.code !== 0) throw new EngineRefitError({ engine, message: failure ?? `exit code ${outcome.code}; last lines:\n${outcome.tail}` });
}
