/**
 * EPContext wrapper models: an ONNX file with one `EPContext` node (domain com.microsoft) that
 * points onnxruntime's TensorRT provider at a prebuilt engine file instead of building one at load.
 * From Node the provider takes no `trt_*` options (DESIGN §2), so a wrapper is the only way to give
 * it our engine. The wrapper keeps the original model's inputs and outputs (names, element types,
 * dims), so callers feed it exactly as they fed the ONNX model.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRuntime, DeviceUnavailableError, InvalidArgumentError, StreamDiffusionError, type Device, type Runtime, type SessionSet } from '@streamdiffusion/core';
import { encodeModel, readModel, toNumber, type OnnxModelProto, type OnnxValueInfo } from '../onnx/onnx-model.js';

/** ONNX AttributeProto types used here. */
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_STRING = 3;
/** The value onnxruntime's TensorRT provider writes as `source`. */
export const EP_CONTEXT_SOURCE = 'TensorrtExecutionProvider';

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** The value info with every unknown dim named, so the wrapper's inputs say which dims are dynamic. */
function namedDims(value: OnnxValueInfo): OnnxValueInfo {
  const tensor = value.type?.tensorType;
  if (tensor === undefined) throw new InvalidArgumentError({ field: 'onnx', value: value.name, expected: 'tensor inputs and outputs only' });
  const dims = (tensor.shape?.dim ?? []).map((dim, index) =>
    dim.dimValue !== undefined && toNumber(dim.dimValue) > 0 ? { dimValue: toNumber(dim.dimValue) } : { dimParam: dim.dimParam || `${value.name ?? 'value'}_dim${index}` },
  );
  return { name: value.name ?? '', type: { tensorType: { elemType: tensor.elemType ?? 0, shape: { dim: dims } } } };
}

/** Options of {@link epContextModel}. */
export interface EpContextModelOptions {
  /** The engine file, relative to the wrapper's folder (onnxruntime refuses paths outside it). */
  readonly engineRelativePath: string;
  /** Compute capability the engine was built for, as onnxruntime writes it (`90` for 9.0). */
  readonly hardwareArchitecture?: string;
  /** The ONNX file the engine was built from (its file name is recorded). */
  readonly onnxModelFilename?: string;
}

/** The wrapper model for `original` (an ONNX ModelProto): one EPContext node, the original's inputs and outputs. */
export function epContextModel(original: OnnxModelProto, options: EpContextModelOptions): OnnxModelProto {
  if (isAbsolute(options.engineRelativePath) || options.engineRelativePath.split(/[\\/]/).includes('..')) {
    throw new InvalidArgumentError({ field: 'engineRelativePath', value: options.engineRelativePath, expected: 'a path inside the wrapper’s folder (relative, without ..)' });
  }
  const graph = original.graph ?? {};
  const initializers = new Set((graph.initializer ?? []).map((tensor) => tensor.name));
  const inputs = (graph.input ?? []).filter((input) => !initializers.has(input.name)).map(namedDims);
  const outputs = (graph.output ?? []).map(namedDims);
  const defaultOpset = (original.opsetImport ?? []).find((entry) => (entry.domain ?? '') === '');
  const attributes = [
    { name: 'main_context', type: ATTRIBUTE_INT, i: 1 },
    { name: 'embed_mode', type: ATTRIBUTE_INT, i: 0 },
    { name: 'ep_cache_context', type: ATTRIBUTE_STRING, s: text(options.engineRelativePath) },
    { name: 'source', type: ATTRIBUTE_STRING, s: text(EP_CONTEXT_SOURCE) },
    { name: 'partition_name', type: ATTRIBUTE_STRING, s: text(`${graph.name ?? 'graph'}_engine`) },
    ...(options.hardwareArchitecture === undefined ? [] : [{ name: 'hardware_architecture', type: ATTRIBUTE_STRING, s: text(options.hardwareArchitecture) }]),
    ...(options.onnxModelFilename === undefined ? [] : [{ name: 'onnx_model_filename', type: ATTRIBUTE_STRING, s: text(basename(options.onnxModelFilename)) }]),
  ];
  return {
    irVersion: toNumber(original.irVersion) || 8,
    producerName: '@streamdiffusion/tensorrt',
    opsetImport: [
      { domain: '', version: toNumber(defaultOpset?.version) || 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph: {
      name: `${graph.name ?? 'graph'}_ep_context`,
      node: [{ name: 'ep_context', opType: 'EPContext', domain: 'com.microsoft', input: inputs.map((input) => input.name ?? ''), output: outputs.map((output) => output.name ?? ''), attribute: attributes }],
      input: inputs,
      output: outputs,
    },
  };
}

/** The wrapper's file name in a stored engine's folder, beside `engine.plan`. */
export const EP_CONTEXT_FILE = 'model_ctx.onnx';

/**
 * Writes the EPContext wrapper of the ONNX file `onnx` to `output`, pointing at `engine` (which
 * must lie in `output`'s folder or below). Written to a temporary file and renamed into place.
 */
export async function writeEpContextModel(options: { readonly onnx: string; readonly engine: string; readonly output: string; readonly computeCapability?: string }): Promise<void> {
  const output = resolve(options.output);
  const engineRelativePath = relative(dirname(output), resolve(options.engine)).split('\\').join('/');
  const model = epContextModel(await readModel(options.onnx), {
    engineRelativePath,
    onnxModelFilename: options.onnx,
    // onnxruntime compares this with the GPU's major·10 + minor.
    ...(options.computeCapability === undefined ? {} : { hardwareArchitecture: options.computeCapability.replace('.', '') }),
  });
  await mkdir(dirname(output), { recursive: true });
  const temporary = `${output}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temporary, encodeModel(model));
    await rename(temporary, output);
  } finally {
    await rm(temporary, { force: true });
  }
}

/** A model loaded through its engine, or its plain ONNX file when the engine could not be used. */
export interface EngineSession<Name extends string> {
  readonly runtime: Runtime;
  readonly sessions: SessionSet<Name>;
  /** The device the model runs on. */
  readonly device: Device;
  /** True when the TensorRT engine is in use. */
  readonly usedEngine: boolean;
  /** Why the engine is not in use (also given to `onWarning`). */
  readonly warning?: string;
  /** Releases the sessions and the runtime this call made. */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@link loadEngineSession}. */
export interface LoadEngineSessionOptions<Name extends string> {
  /** The name the model is run by (`unet`). */
  readonly name: Name;
  /** The EPContext wrapper (see {@link writeEpContextModel}). */
  readonly wrapper: string;
  /** The plain ONNX model, used when the engine cannot run. */
  readonly onnx: string;
  /** Where the plain model runs when TensorRT cannot (default `auto`). */
  readonly fallbackDevice?: Exclude<Device, 'tensorrt'> | 'auto';
  /** Told why the engine is not used. Default: `console.warn`. */
  readonly onWarning?: (message: string) => void;
}

function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

/**
 * Opens the EPContext wrapper on the `tensorrt` device; when that cannot run (no TensorRT provider
 * libraries, no TensorRT, an engine for another GPU), opens the plain ONNX model on the fallback
 * device instead, with a warning that says why.
 */
export async function loadEngineSession<Name extends string>(options: LoadEngineSessionOptions<Name>): Promise<EngineSession<Name>> {
  const warn = options.onWarning ?? ((message: string) => console.warn(message));
  const made = (runtime: Runtime, sessions: SessionSet<Name>, usedEngine: boolean, warning?: string): EngineSession<Name> => {
    const dispose = async (): Promise<void> => {
      await sessions.dispose();
      await runtime.dispose();
    };
    return { runtime, sessions, device: runtime.device.device, usedEngine, ...(warning === undefined ? {} : { warning }), dispose, [Symbol.asyncDispose]: dispose };
  };
  let reason: string | undefined;
  try {
    const runtime = await createRuntime({ device: 'tensorrt' });
    try {
      return made(runtime, await runtime.loadSessions({ [options.name]: options.wrapper } as Record<Name, string>), true);
    } catch (error) {
      await runtime.dispose();
      if (!StreamDiffusionError.isInstance(error)) throw error;
      reason = `the engine did not load (${reasonOf(error)})`;
    }
  } catch (error) {
    if (!(error instanceof DeviceUnavailableError) && !StreamDiffusionError.isInstance(error)) throw error;
    // createRuntime itself failed: the TensorRT device cannot start here.
    reason = reasonOf(error);
  }
  const runtime = await createRuntime({ device: options.fallbackDevice ?? 'auto' });
  try {
    const sessions = await runtime.loadSessions({ [options.name]: options.onnx } as Record<Name, string>);
    const warning = `${options.name}: the TensorRT engine (${options.wrapper}) is not used: ${reason ?? 'unknown'}; running ${options.onnx} on ${runtime.device.device} instead`;
    warn(warning);
    return made(runtime, sessions, false, warning);
  } catch (error) {
    await runtime.dispose();
    throw error;
  }
}
