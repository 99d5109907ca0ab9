/**
 * Building a pipeline's engines, start to end: find trtexec, ask the machine what it is (GPU compute
 * capability, TensorRT version), then for each planned engine either describe what would be built
 * (a dry run, which needs no TensorRT) or build it into the store with its EPContext wrapper model.
 * The CLI's `build-engines` and the ComfyUI Build engines node both run this; they differ only in
 * where the plan comes from and where progress lines go.
 */
import { join } from 'node:path';
import { createRuntime, StreamDiffusionError } from '@streamdiffusion/core';
import type { LoraEntry } from '../lora/hot-lora.js';
import type { EnginePlan, EnginePlanOptions, PlannedEngine } from './engine-plan.js';
import { engineKey, type BuildEnvironment, type EngineStore, type LockHolder } from './engine-store.js';
import { EP_CONTEXT_FILE } from './ep-context.js';
import { refitArguments, refitEngine, refitPython, type RefitEngineOptions } from './refit.js';
import { buildEngine, findTrtexec, plannedEngineKeyParts, probeComputeCapability, probeTensorrtVersion, trtexecArguments, TrtexecNotFoundError, type TrtexecSettings } from './trtexec.js';

/** trtexec is there but the GPU cannot be asked what it is (no NVIDIA driver, no nvidia-smi). */
export class GpuNotFoundError extends StreamDiffusionError {
  constructor() {
    super({ code: 'gpu-not-found', message: 'cannot tell the GPU’s compute capability: `nvidia-smi --query-gpu=compute_cap` gave no answer (is an NVIDIA GPU and driver present?)' });
  }
}

/** What {@link buildEngines} needs. */
export interface BuildEnginesOptions extends Pick<TrtexecSettings, 'refittable' | 'workspaceMiB'> {
  readonly plan: EnginePlan;
  readonly store: EngineStore;
  /** trtexec's path; else found on PATH or in TensorRT's usual folders. */
  readonly trtexec?: string;
  /** Describe the engines and their trtexec commands; build nothing (TensorRT not needed). */
  readonly dryRun?: boolean;
  /** nvidia-smi to ask for the compute capability (default: the one on PATH). */
  readonly nvidiaSmi?: string;
  /** Progress, one line at a time (trtexec's phases, every 50th layer timed, waits for another builder). */
  readonly onProgress?: (line: string) => void;
  /**
   * A LoRA set for the UNet engine: with `refittable`, the built engine is then refitted with the
   * set merged in (stored under its own key; see {@link refitEngine}); without, the engines hold
   * the model's own weights and the report says so.
   */
  readonly loras?: readonly LoraEntry[];
  /** The Python with TensorRT's package, for refits (default: $STREAMDIFFUSION_PYTHON, else python3). */
  readonly python?: string;
}

/** A planned engine in a dry run: its key (when the machine is known), whether it is stored, the trtexec command. */
export type PlannedEngineReport = PlannedEngine & {
  readonly key: string | null;
  readonly stored: boolean;
  readonly command: readonly string[];
  /** The refit command that puts the LoRA set into the built engine, when there is one. */
  readonly refitCommand?: readonly string[];
};

/** An engine after a build: built now or found in the store, with its EPContext wrapper. */
export interface BuiltEngineReport {
  readonly name: string;
  readonly key: string;
  readonly built: boolean;
  readonly enginePath: string;
  readonly wrapper: string;
  /** The engine refitted with the LoRA set (the UNet, when a set was given to refittable engines). */
  readonly refitted?: { readonly key: string; readonly built: boolean; readonly enginePath: string; readonly wrapper: string; readonly loras: number };
}

interface ReportBase {
  readonly store: string;
  readonly modelFolder: string;
  readonly options: EnginePlanOptions;
  /** LoRAs given, and whether they went into the UNet engine (refittable) or were left out. */
  readonly loras: { readonly count: number; readonly refit: boolean };
}

/** What {@link buildEngines} did. */
export type BuildEnginesReport =
  | (ReportBase & { readonly dryRun: true; readonly trtexec: string | null; readonly environment: BuildEnvironment | null; readonly engines: readonly PlannedEngineReport[] })
  | (ReportBase & { readonly dryRun: false; readonly trtexec: string; readonly environment: BuildEnvironment; readonly engines: readonly BuiltEngineReport[] });

/** `--flag value` words quoted for a shell where needed. */
export const shellLine = (words: readonly string[]): string => words.map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`)).join(' ');

const waiting = (name: string, holder: LockHolder | undefined): string => `${name}: waiting for ${holder === undefined ? 'another process' : `process ${holder.pid} on ${holder.host}`} building the same engine`;

/**
 * The plan's engines built into the store (or, with `dryRun`, described).
 * @throws {TrtexecNotFoundError} when trtexec is missing and this is not a dry run (names TensorRT's install guide).
 * @throws {GpuNotFoundError} when the GPU's compute capability cannot be had and this is not a dry run.
 * @throws {EngineBuildError} when trtexec fails (its output's tail included).
 */
export async function buildEngines(options: BuildEnginesOptions): Promise<BuildEnginesReport> {
  const { plan, store } = options;
  const dryRun = options.dryRun === true;
  const progress = options.onProgress ?? (() => undefined);
  let trtexec: string | undefined;
  try {
    trtexec = await findTrtexec(options.trtexec === undefined ? {} : { path: options.trtexec });
  } catch (error) {
    if (!(error instanceof TrtexecNotFoundError) || !dryRun) throw error;
  }
  let environment: BuildEnvironment | undefined;
  if (trtexec !== undefined) {
    const computeCapability = await probeComputeCapability(options.nvidiaSmi === undefined ? {} : { nvidiaSmi: options.nvidiaSmi });
    if (computeCapability === undefined && !dryRun) throw new GpuNotFoundError();
    if (computeCapability !== undefined) environment = { computeCapability, tensorrtVersion: await probeTensorrtVersion(trtexec) };
  }
  const settings = { ...(options.refittable === true ? { refittable: true } : {}), ...(options.workspaceMiB === undefined ? {} : { workspaceMiB: options.workspaceMiB }) };
  const loras = options.loras ?? [];
  const refit = loras.length > 0 && options.refittable === true;
  const base = { store: store.folder, modelFolder: plan.modelFolder, options: plan.options, loras: { count: loras.length, refit } };

  if (dryRun) {
    const engines = await Promise.all(
      plan.engines.map(async (engine): Promise<PlannedEngineReport> => {
        const key = environment === undefined ? null : engineKey(await plannedEngineKeyParts(engine, environment, settings));
        const stored = key === null ? undefined : await store.get(key);
        const enginePath = `${store.folder}/.tmp-${key ?? '<key>'}/engine.plan`;
        const timingCache = environment === undefined ? `${store.folder}/timing-<gpu>-<tensorrt>.cache` : store.timingCachePath(environment);
        const command = [trtexec ?? 'trtexec', ...trtexecArguments({ engine, enginePath, timingCache, ...settings })];
        if (!(refit && engine.kind === 'unet')) return { ...engine, key, stored: stored !== undefined, command };
        const refitCommand = [refitPython(options.python), ...refitArguments({ engine: `${store.folder}/${key ?? '<key>'}/engine.plan`, onnx: `<the UNet with ${loras.length} LoRA(s) merged>`, output: `${store.folder}/.tmp-<refit key>/engine.plan` })];
        return { ...engine, key, stored: stored !== undefined, command, refitCommand };
      }),
    );
    return { ...base, dryRun: true, trtexec: trtexec ?? null, environment: environment ?? null, engines };
  }

  const built: BuiltEngineReport[] = [];
  for (const engine of plan.engines) {
    const result = await buildEngine({
      engine,
      store,
      trtexec: trtexec!,
      environment: environment!,
      ...settings,
      verbose: options.onProgress !== undefined,
      onWait: (holder) => progress(waiting(engine.name, holder)),
      onProgress: (event) => {
        if (event.phase === 'layer') {
          if (event.layersTimed % 50 === 1) progress(`${engine.name}: timing layer ${event.layersTimed} (${event.layer})`);
        } else {
          progress(`${engine.name}: ${event.phase}${event.phase === 'built' && event.seconds !== undefined ? ` in ${event.seconds} s` : ''}`);
        }
      },
    });
    const refitted = refit && engine.kind === 'unet' ? await refitOnCpu({ engine: result, loras, store, ...(options.python === undefined ? {} : { python: options.python }), onProgress: progress, onWait: (holder) => progress(waiting(`${engine.name} (refit)`, holder)) }) : undefined;
    built.push({
      name: engine.name,
      key: result.key,
      built: result.built,
      enginePath: result.enginePath,
      wrapper: join(result.folder, EP_CONTEXT_FILE),
      ...(refitted === undefined ? {} : { refitted: { key: refitted.key, built: refitted.built, enginePath: refitted.enginePath, wrapper: join(refitted.folder, EP_CONTEXT_FILE), loras: loras.length } }),
    });
  }
  return { ...base, dryRun: false, trtexec: trtexec!, environment: environment!, engines: built };
}

/** A refit whose LoRA merge runs on onnxruntime's CPU kernels (a runtime made for it and released after). */
async function refitOnCpu(options: Omit<RefitEngineOptions, 'runtime'>): ReturnType<typeof refitEngine> {
  const runtime = await createRuntime({ device: 'cpu' });
  try {
    return await refitEngine({ ...options, runtime });
  } finally {
    await runtime.dispose();
  }
}

/** Engines hold the weights they were built from: LoRAs reach them only by refit. */
const loraNote = (report: BuildEnginesReport): string[] =>
  report.loras.count > 0 && !report.loras.refit ? [`note: the engines hold the model’s own weights; the ${report.loras.count} LoRA(s) are not in them (build refittable engines to refit them in)`] : [];

const shapes = (engine: PlannedEngine): string[] => engine.inputs.map((input) => `    ${input.name}: min ${input.min.join('×')}, opt ${input.opt.join('×')}, max ${input.max.join('×')}`);

/** The report as text lines, for a terminal or a node's text output. */
export function describeBuildReport(report: BuildEnginesReport): string[] {
  if (report.dryRun) {
    return [
      `plan for ${report.modelFolder} (${report.options.resolution} resolution, ${report.options.precision}); store ${report.store}`,
      ...(report.trtexec === null ? ['trtexec: not found (install TensorRT to build; engine keys need its version and the GPU)'] : []),
      ...report.engines.flatMap((engine) => [
        `${engine.name}: ${engine.onnx}${engine.variant === undefined ? '' : ` (ControlNet inputs ${engine.variant.controlNet ? 'yes' : 'no'}, IP-Adapter ${engine.variant.ipAdapter ? 'yes' : 'no'})`}, batch ${engine.batch.min}–${engine.batch.max} (opt ${engine.batch.opt})${engine.stored ? ', already stored' : ''}`,
        ...shapes(engine),
        `  ${shellLine(engine.command)}`,
        ...(engine.refitCommand === undefined ? [] : [`  then refit with the LoRA set: ${shellLine(engine.refitCommand)}`]),
      ]),
      ...loraNote(report),
    ];
  }
  return [
    ...report.engines.flatMap((engine) => [
      `${engine.name}: ${engine.built ? 'built' : 'already stored'} → ${engine.enginePath} (wrapper ${engine.wrapper})`,
      ...(engine.refitted === undefined ? [] : [`${engine.name} with ${engine.refitted.loras} LoRA(s): ${engine.refitted.built ? 'refitted' : 'already stored'} → ${engine.refitted.enginePath} (wrapper ${engine.refitted.wrapper})`]),
    ]),
    `${report.engines.filter((engine) => engine.built).length} engine(s) built, ${report.engines.filter((engine) => !engine.built).length} already stored in ${report.store}`,
    ...loraNote(report),
  ];
}
