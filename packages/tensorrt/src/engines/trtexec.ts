/**
 * Engine builds through NVIDIA's `trtexec`: finding it, its arguments from a plan, its log turned
 * into progress, and a build straight into the engine store. From Node, onnxruntime passes only
 * `deviceId` to its TensorRT provider, so engines are built here, ahead of time, by TensorRT itself.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, StreamDiffusionError } from '@streamdiffusion/core';
import type { InputProfile, PlannedEngine } from './engine-plan.js';
import { EP_CONTEXT_FILE, writeEpContextModel } from './ep-context.js';
import { runLines } from './run-lines.js';
import { hashFile, type BuildEnvironment, type EngineKeyParts, type EngineStore, type LockOptions, type StoredEngine } from './engine-store.js';

/** Where TensorRT (and trtexec with it) comes from. */
export const TENSORRT_INSTALL_URL = 'https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html';

/** Places TensorRT's packages put trtexec, tried after PATH. */
const KNOWN_LOCATIONS = ['/usr/src/tensorrt/bin/trtexec', '/usr/local/tensorrt/bin/trtexec', '/opt/tensorrt/bin/trtexec'];

/** trtexec is not installed (or not where it was said to be). */
export class TrtexecNotFoundError extends StreamDiffusionError {
  /** Every place looked at. */
  readonly searched: readonly string[];

  constructor(options: { searched: readonly string[]; configured?: string }) {
    const where = options.configured === undefined ? `not on PATH nor in ${KNOWN_LOCATIONS.join(', ')}` : `${options.configured} is not an executable file`;
    super({
      code: 'trtexec-not-found',
      message: `trtexec (TensorRT's engine builder) was not found: ${where}. Install TensorRT (${TENSORRT_INSTALL_URL}) and put its bin/ folder on PATH, or give the path to trtexec.`,
    });
    this.searched = options.searched;
  }
}

/** trtexec ran and failed; `outputTail` holds its last lines. */
export class EngineBuildError extends StreamDiffusionError {
  readonly engine: string;
  readonly exitCode: number | null;
  readonly outputTail: string;

  constructor(options: { engine: string; exitCode: number | null; signal?: string | null; outputTail: string; command: readonly string[] }) {
    const how = options.exitCode === null ? `was killed (${options.signal ?? 'signal'})` : `exited with code ${options.exitCode}`;
    super({ code: 'engine-build', message: `building the ${options.engine} engine failed: trtexec ${how}. Last lines of its output:\n${options.outputTail}` });
    this.engine = options.engine;
    this.exitCode = options.exitCode;
    this.outputTail = options.outputTail;
  }
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * The trtexec to run: `path` when given (it must be an executable file), else the first on PATH,
 * else a known install location.
 * @throws {TrtexecNotFoundError} pointing to TensorRT's install guide.
 */
export async function findTrtexec(options: { readonly path?: string; readonly environment?: Readonly<Record<string, string | undefined>> } = {}): Promise<string> {
  if (options.path !== undefined) {
    const given = resolve(options.path);
    if (await isExecutable(given)) return given;
    throw new TrtexecNotFoundError({ searched: [given], configured: given });
  }
  const environment = options.environment ?? process.env;
  const names = process.platform === 'win32' ? ['trtexec.exe'] : ['trtexec'];
  const candidates = [...(environment.PATH ?? '').split(delimiter).filter((folder) => folder !== '').flatMap((folder) => names.map((name) => join(folder, name))), ...KNOWN_LOCATIONS];
  for (const candidate of candidates) if (await isExecutable(candidate)) return candidate;
  throw new TrtexecNotFoundError({ searched: candidates });
}

/** A shape list for --minShapes/--optShapes/--maxShapes: `sample:2x4x64x64,timestep:2`. */
export function shapeSpec(inputs: readonly InputProfile[], which: 'min' | 'opt' | 'max'): string {
  // trtexec reads a name with ':' or ',' in single quotes.
  const name = (text: string): string => (/[:,']/.test(text) ? `'${text.replaceAll("'", "\\'")}'` : text);
  return inputs.map((input) => `${name(input.name)}:${input[which].join('x')}`).join(',');
}

/** Build settings beyond the plan. */
export interface TrtexecSettings {
  /** A refittable engine (`--refit`): weights (a LoRA merge) can be swapped in without a rebuild. */
  readonly refittable?: boolean;
  /** The builder's workspace limit in MiB (`--memPoolSize=workspace:<n>M`); TensorRT's default when absent. */
  readonly workspaceMiB?: number;
  /** Per-layer log lines (`--verbose`), for layer-by-layer progress. */
  readonly verbose?: boolean;
}

/** trtexec's arguments for one planned engine, written to `enginePath`, reusing `timingCache`. */
export function trtexecArguments(options: { readonly engine: PlannedEngine; readonly enginePath: string; readonly timingCache: string } & TrtexecSettings): string[] {
  const { engine } = options;
  if (options.workspaceMiB !== undefined && !(Number.isInteger(options.workspaceMiB) && options.workspaceMiB > 0)) {
    throw new InvalidArgumentError({ field: 'workspaceMiB', value: options.workspaceMiB, expected: 'a positive integer (MiB)' });
  }
  const args = [`--onnx=${engine.onnx}`, `--saveEngine=${options.enginePath}`];
  if (engine.inputs.length > 0) {
    args.push(`--minShapes=${shapeSpec(engine.inputs, 'min')}`, `--optShapes=${shapeSpec(engine.inputs, 'opt')}`, `--maxShapes=${shapeSpec(engine.inputs, 'max')}`);
  }
  if (engine.precision === 'fp16') args.push('--fp16');
  args.push(`--timingCacheFile=${options.timingCache}`);
  if (options.refittable === true) args.push('--refit');
  if (options.workspaceMiB !== undefined) args.push(`--memPoolSize=workspace:${options.workspaceMiB}M`);
  // Build and save only; the timing run would need the GPU for minutes more.
  args.push('--skipInference');
  if (options.verbose === true) args.push('--verbose');
  return args;
}

/** What trtexec is doing, read from its log. */
export type TrtexecProgress =
  | { readonly phase: 'parsing'; readonly line: string }
  | { readonly phase: 'building'; readonly line: string }
  | { readonly phase: 'layer'; readonly layer: string; readonly layersTimed: number; readonly line: string }
  | { readonly phase: 'built'; readonly seconds: number | undefined; readonly line: string }
  | { readonly phase: 'saved'; readonly line: string }
  | { readonly phase: 'error'; readonly line: string };

/** Reads trtexec's log line by line; returns the progress event of a line that has one (each phase once, every layer). */
export function createProgressParser(): (line: string) => TrtexecProgress | undefined {
  let layersTimed = 0;
  const seen = new Set<TrtexecProgress['phase']>();
  const once = (progress: TrtexecProgress): TrtexecProgress | undefined => {
    if (progress.phase !== 'error' && seen.has(progress.phase)) return undefined;
    seen.add(progress.phase);
    return progress;
  };
  return (raw) => {
    const line = raw.trim();
    if (line === '') return undefined;
    if (/Start parsing network model/i.test(line)) return once({ phase: 'parsing', line });
    // The builder pass starts once the network is parsed (TensorRT 8 and 10 word it differently).
    if (/Finished parsing network model|Starting engine build|(?:Global|Local) timing cache in use/i.test(line)) return once({ phase: 'building', line });
    // Per-layer tactic timing: printed with --verbose.
    const timing = /(?:Computing costs for|Autotuning (?:op|layer)\s*:?)\s*(.+)$/i.exec(line);
    if (timing !== null) {
      layersTimed += 1;
      return { phase: 'layer', layer: timing[1]!.trim(), layersTimed, line };
    }
    const built = /Engine generation completed in ([\d.]+) seconds|Engine built in ([\d.]+) sec/i.exec(line);
    if (built !== null) return once({ phase: 'built', seconds: Number(built[1] ?? built[2]), line });
    if (/Engine saved to|Saved engine to|Skipped inference phase|&&&& PASSED/i.test(line)) return once({ phase: 'saved', line });
    if (/^\[[^\]]*\]\s*\[E\]|^\[E\]|&&&& FAILED/.test(line)) return { phase: 'error', line };
    return undefined;
  };
}

/** The TensorRT version in trtexec's banner: `[TensorRT v100300]` → `10.3.0`, `v8601` → `8.6.1`. */
export function tensorrtVersionFromBanner(text: string): string | undefined {
  const explicit = /TensorRT version:\s*(\d+\.\d+\.\d+)/i.exec(text);
  if (explicit !== null) return explicit[1];
  const banner = /\[TensorRT v(\d+)\]/.exec(text);
  if (banner === null) return undefined;
  const number = Number(banner[1]);
  // 8.x encodes major·1000 + minor·100 + patch; 10.x major·10000 + minor·100 + patch.
  return number >= 100000
    ? `${Math.floor(number / 10000)}.${Math.floor(number / 100) % 100}.${number % 100}`
    : `${Math.floor(number / 1000)}.${Math.floor(number / 100) % 10}.${number % 100}`;
}

/** The TensorRT version trtexec reports (its `--help` banner). */
export async function probeTensorrtVersion(trtexec: string): Promise<string> {
  let text = '';
  await runLines(trtexec, ['--help'], (line) => {
    text += `${line}\n`;
  });
  const version = tensorrtVersionFromBanner(text);
  if (version === undefined) throw new StreamDiffusionError({ code: 'engine-build', message: `${trtexec} --help printed no TensorRT version banner` });
  return version;
}

/** The GPU's compute capability from `nvidia-smi` (`9.0`), or undefined when it cannot be asked. */
export async function probeComputeCapability(options: { readonly nvidiaSmi?: string; readonly device?: number } = {}): Promise<string | undefined> {
  const lines: string[] = [];
  try {
    const result = await runLines(options.nvidiaSmi ?? 'nvidia-smi', ['--query-gpu=compute_cap', '--format=csv,noheader', `--id=${options.device ?? 0}`], (line) => lines.push(line.trim()));
    return result.code === 0 ? lines.find((line) => /^\d+\.\d+$/.test(line)) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs trtexec with `args`, reporting progress; throws {@link EngineBuildError} with the output's tail when it fails. */
export async function runTrtexec(options: { readonly trtexec: string; readonly args: readonly string[]; readonly engine: string; readonly onProgress?: (progress: TrtexecProgress) => void }): Promise<void> {
  const parse = createProgressParser();
  const result = await runLines(options.trtexec, options.args, (line) => {
    const progress = parse(line);
    if (progress !== undefined) options.onProgress?.(progress);
  });
  if (result.code !== 0) {
    throw new EngineBuildError({ engine: options.engine, exitCode: result.code, signal: result.signal, outputTail: result.stderrTail.trim() === '' ? result.tail : result.stderrTail, command: [options.trtexec, ...options.args] });
  }
}

/** What {@link buildEngine} needs. */
export interface BuildEngineOptions extends TrtexecSettings, LockOptions {
  readonly engine: PlannedEngine;
  readonly store: EngineStore;
  /** trtexec's path (see {@link findTrtexec}). */
  readonly trtexec: string;
  /** The machine the engine is for (see {@link probeTensorrtVersion}, {@link probeComputeCapability}). */
  readonly environment: BuildEnvironment;
  readonly onProgress?: (progress: TrtexecProgress) => void;
}

/** The key parts of a planned engine built on `environment` (the ONNX file hashed): what {@link buildEngine} stores it under. */
export async function plannedEngineKeyParts(engine: PlannedEngine, environment: BuildEnvironment, settings: Pick<TrtexecSettings, 'refittable'> = {}): Promise<EngineKeyParts> {
  return { onnxSha256: await hashFile(engine.onnx), loraHash: null, precision: engine.precision, inputs: engine.inputs, ...environment, ...(settings.refittable === true ? { refittable: true } : {}) };
}

/**
 * The engine of a planned model: from the store when it is there, else built by trtexec into a
 * temporary file and moved into the store under the key's lock, with its EPContext wrapper
 * (`EP_CONTEXT_FILE`) beside it.
 */
export async function buildEngine(options: BuildEngineOptions): Promise<StoredEngine & { readonly built: boolean }> {
  const { engine, store, environment } = options;
  const info = await stat(engine.onnx);
  const meta = {
    ...(await plannedEngineKeyParts(engine, environment, options)),
    name: engine.name,
    kind: engine.kind,
    onnx: { path: engine.onnx, bytes: info.size, mtimeMs: info.mtimeMs },
  };
  return store.ensure({
    meta,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.onWait === undefined ? {} : { onWait: options.onWait }),
    build: async (enginePath) => {
      const args = trtexecArguments({ ...options, enginePath, timingCache: store.timingCachePath(environment) });
      await runTrtexec({ trtexec: options.trtexec, args, engine: engine.name, ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }) });
      // The wrapper goes into the key folder with the engine (written once, not on every later use).
      await writeEpContextModel({ onnx: engine.onnx, engine: enginePath, output: join(dirname(enginePath), EP_CONTEXT_FILE), computeCapability: environment.computeCapability });
    },
  });
}
