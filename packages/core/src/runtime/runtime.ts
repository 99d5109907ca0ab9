import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { errorFromWire } from '../errors/error-wire.js';
import { DisposedError, InvalidArgumentError } from '../errors/errors.js';
import { DEVICE_REQUESTS, type DeviceChoice, type DeviceRequest } from './devices.js';
import { float16BitsToFloat32, type TensorData, type TensorType } from './dtypes.js';
import type { HostTensor } from './host-tensor.js';
import { checkInputs, type InputDescription, type ModelSignature } from './model-signature.js';
import {
  ownedBuffer,
  type ModelSource,
  type RuntimeStats,
  type SessionSettings,
  type WireInput,
  type WireOutput,
  type WorkerEnvelope,
  type WorkerRequest,
  type WorkerResponse,
  type WorkerResults,
} from './wire.js';

/** Options of {@link createRuntime}. */
export interface RuntimeOptions extends SessionSettings {
  /** Where models run. `auto` (the default) picks the best device this machine can run. */
  readonly device?: DeviceRequest;
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

/**
 * Starts the inference worker: the built `.js` beside this file, or, when running from the `.ts`
 * sources (tests, examples), the source through tsx's loader, registered inside the worker.
 */
function startWorker(): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const tsxFolder = dirname(createRequire(here).resolve('tsx/package.json'));
    const api = pathToFileURL(join(tsxFolder, 'dist', 'esm', 'api', 'index.mjs')).href;
    const source = new URL('./inference-worker.ts', here).href;
    const bootstrap = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(source)});`;
    return new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`));
  }
  const beside = new URL('./inference-worker.js', here);
  // Bundled builds put every entry at the root of dist/.
  return new Worker(existsSync(fileURLToPath(beside)) ? beside : new URL('./runtime/inference-worker.js', here));
}

/**
 * A tensor a model produced. Its data stays where the model left it (worker memory, or GPU memory on
 * WebGPU) until you read it; feed it straight into another model's run without a round trip.
 */
export class RuntimeTensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly #runtime: Runtime;
  readonly #handle: number | undefined;
  #data: TensorData | undefined;
  #disposed = false;

  /** @internal made by {@link SessionSet.run}. */
  constructor(runtime: Runtime, output: WireOutput) {
    this.#runtime = runtime;
    this.type = output.type;
    this.dims = output.dims;
    this.#handle = output.handle;
    this.#data = output.data;
  }

  /** @internal the worker-side handle, when the data lives there. */
  get handle(): number | undefined {
    if (this.#disposed) throw new DisposedError('a RuntimeTensor');
    return this.#handle;
  }

  /** @internal host data, when it was read with the run. */
  get hostData(): TensorData | undefined {
    return this.#data;
  }

  /** The data in its own element type (fp16 as raw bits in a Uint16Array). */
  async data(): Promise<TensorData> {
    const handle = this.handle;
    if (handle !== undefined) return this.#runtime.request({ op: 'read', handle, asFloat32: false });
    if (this.#data === undefined) throw new DisposedError('a RuntimeTensor');
    return this.#data;
  }

  /** The data as fp32 values, whatever the float element type. */
  async float32(): Promise<Float32Array> {
    if (this.type !== 'float32' && this.type !== 'float16') {
      throw new InvalidArgumentError({ field: 'tensor.type', value: this.type, expected: 'float32 or float16 to read as fp32' });
    }
    const handle = this.handle;
    if (handle !== undefined) return (await this.#runtime.request({ op: 'read', handle, asFloat32: true })) as Float32Array;
    const data = await this.data();
    return this.type === 'float16' ? float16BitsToFloat32(data as Uint16Array) : (data as Float32Array);
  }

  /** Frees the tensor where it lives. Safe to call twice. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#data = undefined;
    if (this.#handle !== undefined && !this.#runtime.disposed) {
      await this.#runtime.request({ op: 'release', handles: [this.#handle] });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

/** Options of {@link SessionSet.run}. */
export interface RunOptions<Output extends string = string> {
  /** Outputs to bring back as host data with the run (others stay on the device until read). */
  readonly read?: readonly Output[];
  /** Bring fp16 outputs in `read` back as fp32 values. Default true. */
  readonly readAsFloat32?: boolean;
  /**
   * Outputs that are decoded images (`[f, 3, H, W]` in [-1, 1]) to bring back as `[f, H, W, 3]`
   * uint8 RGB pixels, converted where the model ran (on the GPU on WebGPU) as `tensorToImage` does.
   */
  readonly readPixels?: readonly Output[];
}

/** The models of one pipeline, loaded once into a runtime's worker. */
export class SessionSet<Name extends string = string> {
  /** What each model declares: input and output names, element types and dims. */
  readonly signatures: Readonly<Record<Name, ModelSignature>>;
  readonly #runtime: Runtime;
  readonly #setId: number;
  #disposed = false;

  /** @internal made by {@link Runtime.loadSessions}. */
  constructor(runtime: Runtime, setId: number, signatures: Record<Name, ModelSignature>) {
    this.#runtime = runtime;
    this.#setId = setId;
    this.signatures = signatures;
  }

  /** The names of the loaded models. */
  get models(): Name[] {
    return Object.keys(this.signatures) as Name[];
  }

  /**
   * Runs one model. Inputs are host tensors or outputs of earlier runs; they are checked against the
   * model's declared inputs first (a mismatch raises `TensorInputError` and nothing runs).
   */
  async run(
    model: Name,
    inputs: Readonly<Record<string, HostTensor | RuntimeTensor>>,
    options: RunOptions = {},
  ): Promise<Record<string, RuntimeTensor>> {
    if (this.#disposed) throw new DisposedError('a SessionSet');
    const signature = this.signatures[model];
    if (signature === undefined) {
      throw new InvalidArgumentError({ field: 'model', value: model, expected: `one of ${this.models.join(', ')}` });
    }
    const descriptions: Record<string, InputDescription> = {};
    for (const [name, tensor] of Object.entries(inputs)) {
      descriptions[name] = {
        type: tensor.type,
        dims: tensor.dims,
        resident: tensor instanceof RuntimeTensor && tensor.handle !== undefined,
      };
    }
    const feedTypes = checkInputs(model, signature, descriptions);
    const wireInputs: Record<string, WireInput> = {};
    for (const [name, tensor] of Object.entries(inputs)) wireInputs[name] = wireInput(tensor, feedTypes[name] ?? tensor.type);
    const outputs = await this.#runtime.request({
      op: 'run',
      setId: this.#setId,
      model,
      inputs: wireInputs,
      read: options.read ?? [],
      readAsFloat32: options.readAsFloat32 ?? true,
      ...(options.readPixels === undefined ? {} : { readPixels: options.readPixels }),
    });
    return Object.fromEntries(
      Object.entries(outputs).map(([name, output]) => [name, new RuntimeTensor(this.#runtime, output)]),
    );
  }

  /**
   * Replaces one model of the set by another with the same inputs and outputs (the same network
   * with other weights: a LoRA merged in or taken out). The new session loads while runs go on and
   * takes over between two runs; a model whose inputs or outputs differ is refused
   * (`InvalidArgumentError`) and the old one stays.
   */
  async replace(model: Name, source: string | ModelSource): Promise<void> {
    if (this.#disposed) throw new DisposedError('a SessionSet');
    if (!(model in this.signatures)) throw new InvalidArgumentError({ field: 'model', value: model, expected: `one of ${this.models.join(', ')}` });
    await this.#runtime.request({ op: 'replace', setId: this.#setId, name: model, ...(typeof source === 'string' ? { path: source } : source) });
  }

  /** Releases every session of the set and every tensor its runs left on the device. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!this.#runtime.disposed) await this.#runtime.request({ op: 'unload', setId: this.#setId });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

/**
 * An inference runtime: one worker thread that owns the onnxruntime sessions of one device, so
 * model runs never block the caller's event loop. Make one with {@link createRuntime}.
 */
export class Runtime {
  /** The device models run on, and why it was picked. */
  readonly device: DeviceChoice;
  readonly #worker: Worker;
  readonly #pending: Map<number, Pending>;
  #nextId: number;
  #nextSetId = 1;
  #disposed = false;
  #failure: Error | undefined;

  /** @internal use {@link createRuntime}. */
  constructor(worker: Worker, device: DeviceChoice, pending: Map<number, Pending>, nextId: number) {
    this.#worker = worker;
    this.device = device;
    this.#pending = pending;
    this.#nextId = nextId;
    worker.on('error', (error) => this.#fail(error));
    worker.on('exit', (code) => this.#fail(new DisposedError(`the inference worker (exited with code ${code})`)));
  }

  /** True once {@link dispose} was called or the worker died. */
  get disposed(): boolean {
    return this.#disposed;
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    this.#disposed = true;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  /** @internal sends one request to the worker. */
  request<Op extends WorkerRequest['op']>(request: Extract<WorkerRequest, { op: Op }>): Promise<WorkerResults[Op]> {
    if (this.#disposed) return Promise.reject(this.#failure ?? new DisposedError('the runtime'));
    return send(this.#worker, this.#pending, this.#nextId++, request) as Promise<WorkerResults[Op]>;
  }

  /**
   * Loads models (name → `.onnx` path, or a {@link ModelSource}; external `.onnx_data` weights are found beside it) into one
   * set, all or nothing: if one fails, none stays loaded.
   */
  async loadSessions<Name extends string>(models: Readonly<Record<Name, string | ModelSource>>): Promise<SessionSet<Name>> {
    const setId = this.#nextSetId++;
    const signatures = await this.request({
      op: 'load',
      setId,
      models: Object.entries<string | ModelSource>(models).map(([name, source]) => ({ name, ...(typeof source === 'string' ? { path: source } : source) })),
    });
    return new SessionSet<Name>(this, setId, signatures);
  }

  /**
   * Σ weightᵢ·tensorᵢ over same-typed (float32 or float16), same-shaped tensors, computed where they
   * live (on the GPU on WebGPU; weights rounded to the tensors' type). A weight is one number or one
   * per entry of axis 0 (per batch entry). The result stays in the worker unless `read` is set;
   * dispose it when done.
   */
  async combine(terms: readonly CombineTerm[], options: CombineOptions = {}): Promise<RuntimeTensor> {
    if (terms.length === 0) throw new InvalidArgumentError({ field: 'terms', value: [], expected: 'at least one tensor' });
    const [sum] = await this.combineEach([terms], options);
    return sum!;
  }

  /**
   * Many independent {@link combine}s in one session run (the 13 ControlNet residuals of a UNet
   * run: one run instead of 13). Every group has the same number of terms of one element type; each
   * group's tensors share a shape. Results in group order.
   */
  async combineEach(groups: readonly (readonly CombineTerm[])[], options: CombineOptions = {}): Promise<RuntimeTensor[]> {
    if (groups.length === 0) throw new InvalidArgumentError({ field: 'groups', value: [], expected: 'at least one group of tensors' });
    for (const [group, terms] of groups.entries()) {
      for (const [index, { weight }] of terms.entries()) {
        if (!(typeof weight === 'number' ? [weight] : weight).every(Number.isFinite)) {
          throw new InvalidArgumentError({ field: `${groups.length > 1 ? `groups[${group}].` : ''}terms[${index}].weight`, value: weight, expected: 'finite numbers' });
        }
      }
    }
    const outputs = await this.request({
      op: 'combine',
      groups: groups.map((terms) => terms.map(({ tensor, weight }) => ({ input: wireInput(tensor, tensor.type), weight }))),
      read: options.read ?? false,
      readAsFloat32: options.readAsFloat32 ?? true,
    });
    return outputs.map((output) => new RuntimeTensor(this, output));
  }

  /**
   * Moves host data into the worker once, to feed many runs without sending it again (constant
   * inputs such as all-zero residuals). A held tensor is fed as it is, so hold it in the element
   * type the model takes: `as: 'float16'` converts float32 data inside onnxruntime (as runs do).
   * Dispose it when done.
   */
  async hold(tensor: HostTensor, options: { readonly as?: TensorType } = {}): Promise<RuntimeTensor> {
    return new RuntimeTensor(this, await this.request({ op: 'hold', input: wireInput(tensor, options.as ?? tensor.type) }));
  }

  /** How many sessions and tensors the worker holds (for leak checks). */
  async stats(): Promise<RuntimeStats> {
    return this.request({ op: 'stats' });
  }

  /** Stops the worker, which frees every session and tensor it held. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#failure = new DisposedError('the runtime');
    await this.#worker.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

/** How a tensor travels to the worker: by handle when it lives there, else its host data. */
function wireInput(tensor: HostTensor | RuntimeTensor, feedType: TensorType): WireInput {
  if (tensor instanceof RuntimeTensor) {
    const handle = tensor.handle;
    if (handle !== undefined) return { kind: 'resident', handle };
    if (tensor.hostData === undefined) throw new DisposedError('a RuntimeTensor');
    return { kind: 'host', type: tensor.type, feedType, dims: tensor.dims, data: tensor.hostData };
  }
  return { kind: 'host', type: tensor.type, feedType, dims: tensor.dims, data: tensor.data };
}

/** The buffers of model bytes in a request, handed to the worker instead of copied (a UNet is gigabytes). */
function modelBuffers(request: WorkerRequest): ArrayBuffer[] {
  const sources: readonly ModelSource[] = request.op === 'load' ? request.models : request.op === 'replace' ? [request] : [];
  return sources.flatMap(({ bytes }) => {
    const buffer = bytes === undefined ? undefined : ownedBuffer(bytes);
    return buffer === undefined ? [] : [buffer];
  });
}

function send(worker: Worker, pending: Map<number, Pending>, id: number, request: WorkerRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    const envelope: WorkerEnvelope = { ...request, id };
    worker.postMessage(envelope, modelBuffers(request));
  });
}

/**
 * Starts a runtime on a device. `auto` picks the best device this machine can run and says why in
 * `runtime.device.reason`; a named device that cannot run raises `DeviceUnavailableError` naming
 * what is missing.
 */
/** One term of {@link Runtime.combine}: a tensor and its weight (one number, or one per entry of axis 0). */
export interface CombineTerm {
  readonly tensor: HostTensor | RuntimeTensor;
  readonly weight: number | readonly number[];
}

/** Options of {@link Runtime.combine} and {@link Runtime.combineEach}. */
export interface CombineOptions {
  /** Bring the results back to the host (default: they stay in the worker). */
  readonly read?: boolean;
  /** Read float16 results as float32 (default true). */
  readonly readAsFloat32?: boolean;
}

export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const device = options.device ?? 'auto';
  if (!(DEVICE_REQUESTS as readonly string[]).includes(device)) {
    throw new InvalidArgumentError({ field: 'device', value: device, expected: DEVICE_REQUESTS.join(' | ') });
  }
  const worker = startWorker();
  const pending = new Map<number, Pending>();
  worker.on('message', (response: WorkerResponse) => {
    const waiting = pending.get(response.id);
    if (waiting === undefined) return;
    pending.delete(response.id);
    if (response.ok) waiting.resolve(response.result);
    else waiting.reject(errorFromWire(response.error));
  });
  let rejectStart: (error: Error) => void = () => undefined;
  const startFailure = new Promise<never>((_, reject) => {
    rejectStart = reject;
  });
  worker.once('error', rejectStart);
  try {
    const settings: SessionSettings = {
      ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
      ...(options.webgpu === undefined ? {} : { webgpu: options.webgpu }),
      ...(options.profileFilePrefix === undefined ? {} : { profileFilePrefix: options.profileFilePrefix }),
    };
    const choice = (await Promise.race([
      send(worker, pending, 0, { op: 'init', device, settings }),
      startFailure,
    ])) as DeviceChoice;
    worker.off('error', rejectStart);
    return new Runtime(worker, choice, pending, 1);
  } catch (error) {
    await worker.terminate();
    throw error;
  }
}
