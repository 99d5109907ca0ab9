/**
 * The inference worker: the one thread that owns onnxruntime sessions and the tensors they make.
 * `session.run` blocks the thread it runs on, so it runs here and the caller's event loop stays free.
 * Started by {@link createRuntime}; never imported.
 */
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { errorToWire } from '../errors/error-wire.js';
import { DisposedError, InferenceError, InvalidArgumentError, ModelFolderError } from '../errors/errors.js';
import { StreamDiffusionError } from '../errors/streamdiffusion-error.js';
import { machineEnvironment, resolveDevice, type Device } from './devices.js';
import { convertTensorData, float16BitsToFloat32, float32ToFloat16Bits, type TensorData, type TensorType } from './dtypes.js';
import { castModel, identityModel, imagePixelsModel, weightedSumsModel } from './helper-models.js';
import { describeSignature as describeValue, type ModelSignature, type ValueSignature } from './model-signature.js';
import { sessionOptions } from './session-options.js';
import { ownedBuffer, type ModelSource, type SessionSettings, type WireInput, type WireOutput, type WorkerEnvelope, type WorkerResponse, type WorkerResults } from './wire.js';

/** A 79-byte model (one Relu) used to find out whether a provider starts. */
const PROBE_MODEL = Buffer.from(
  'CAg6RQoMCgF4EgF5IgRSZWx1EgFnWhgKAXgSEwoRCAESDQoHEgViYXRjaAoCCARiGAoBeRITChEIARINCgcSBWJhdGNoCgIIBEIECgAQEQ==',
  'base64',
);

const KNOWN_TYPES = new Set<string>(['float32', 'float16', 'int32', 'int64', 'uint8', 'bool']);

interface LoadedSession {
  readonly session: ort.InferenceSession;
  readonly signature: ModelSignature;
  /**
   * Runs using the session now. Requests are not queued here (runs of different models overlap), so
   * a replace or unload waits for these before releasing the session they use.
   */
  readonly activeRuns: Set<Promise<unknown>>;
}

let device: Device | undefined;
let settings: SessionSettings = {};
const sets = new Map<number, Map<string, LoadedSession>>();
const tensors = new Map<number, { tensor: ort.Tensor; setId: number }>();
let nextHandle = 1;
/**
 * Model sessions onnxruntime holds (RuntimeStats.sessions): counted when created, uncounted only
 * once their `release()` has resolved, so a session dropped without being released stays counted.
 */
let openSessions = 0;
/** Runs per model name and the time they took inside this worker (see RuntimeStats.runs). */
const runs = new Map<string, { count: number; ms: number }>();
/** Counts one run of `name` that started at `started`. */
function counted(name: string, started: number): void {
  const total = runs.get(name) ?? { count: 0, ms: 0 };
  runs.set(name, { count: total.count + 1, ms: total.ms + performance.now() - started });
}

async function probe(target: Device): Promise<void> {
  const session = await ort.InferenceSession.create(PROBE_MODEL, sessionOptions(target, settings));
  await session.release();
}

function toSignature(values: readonly ort.InferenceSession.ValueMetadata[]): ValueSignature[] {
  return values.map((value) =>
    value.isTensor
      ? {
          name: value.name,
          type: KNOWN_TYPES.has(value.type) ? (value.type as TensorType) : 'other',
          shape: [...value.shape],
        }
      : { name: value.name, type: 'other', shape: [] },
  );
}

function describeLoadFailure(path: string, error: unknown): ModelFolderError {
  const message = error instanceof Error ? error.message : String(error);
  const corrupt = /protobuf parsing failed|ModelProto|invalid model|failed to load model|No graph was found/i.test(message);
  const missingData = /onnx_data|external data|GetExtDataFromTensorProto|cannot open|No such file/i.test(message);
  return new ModelFolderError({
    problem: missingData ? 'missing-file' : corrupt ? 'corrupt-model' : 'unloadable-model',
    path,
    message: missingData
      ? `the model's external weights could not be read: ${message.split('\n')[0]}`
      : corrupt
        ? 'the ONNX file is truncated or corrupt and could not be parsed'
        : `onnxruntime could not load the model: ${message.split('\n')[0]}`,
    cause: error,
  });
}

function requireDevice(): Device {
  if (device === undefined) throw new DisposedError('the runtime (not initialised)');
  return device;
}

/** A session for a model file, or for its bytes changed in memory (external weights still read beside the file). */
async function createSession(name: string, source: ModelSource): Promise<LoadedSession> {
  const target = requireDevice();
  const profiling = settings.profileFilePrefix === undefined ? {} : { enableProfiling: true, profileFilePrefix: `${settings.profileFilePrefix}-${name}` };
  let session: ort.InferenceSession;
  try {
    session =
      source.bytes === undefined
        ? await ort.InferenceSession.create(source.path, { ...sessionOptions(target, settings), ...profiling })
        : await ort.InferenceSession.create(source.bytes, {
            ...sessionOptions(target, settings),
            ...profiling,
            extra: { session: { model_external_initializers_file_folder_path: dirname(source.path) } },
          });
  } catch (error) {
    throw describeLoadFailure(source.path, error);
  }
  openSessions += 1;
  return { session, signature: { inputs: toSignature(session.inputMetadata), outputs: toSignature(session.outputMetadata) }, activeRuns: new Set() };
}

/** Releases a session once the runs using it have ended (a replace or unload can come mid-run). */
async function releaseSession({ session, activeRuns }: LoadedSession): Promise<void> {
  while (activeRuns.size > 0) await Promise.allSettled(activeRuns);
  await session.release();
  openSessions -= 1;
}

const describeSignature = (signature: ModelSignature): string =>
  `inputs ${signature.inputs.map((value) => `${value.name} ${describeValue(value)}`).join(', ')}; outputs ${signature.outputs.map((value) => `${value.name} ${describeValue(value)}`).join(', ')}`;

function setOf(setId: number): Map<string, LoadedSession> {
  const set = sets.get(setId);
  if (set === undefined) throw new DisposedError(`session set ${setId}`);
  return set;
}

/** Cast sessions (one per rank) that turn float32 host data into float16 inside onnxruntime. */
const halfCasts = new Map<number, Promise<ort.InferenceSession>>();

/**
 * float32 host data for a float16 input, converted by a Cast session: vectorised on the CPU, a GPU
 * kernel on WebGPU (where the result stays on the GPU), instead of element by element in JavaScript.
 */
async function castToHalf(data: Float32Array, dims: readonly number[]): Promise<ort.Tensor> {
  let cast = halfCasts.get(dims.length);
  if (cast === undefined) {
    cast = ort.InferenceSession.create(castModel('float32', 'float16', dims.length), sessionOptions(requireDevice(), settings));
    halfCasts.set(dims.length, cast);
  }
  const { y } = await (await cast).run({ x: new ort.Tensor('float32', data, dims) });
  return y!;
}

/** The onnxruntime tensor for an input, and whether it is a temporary to dispose after the run. */
async function feed(input: WireInput): Promise<{ tensor: ort.Tensor; temporary: boolean }> {
  if (input.kind === 'resident') {
    const held = tensors.get(input.handle);
    if (held === undefined) throw new DisposedError(`tensor ${input.handle}`);
    return { tensor: held.tensor, temporary: false };
  }
  if (input.type === 'float32' && input.feedType === 'float16' && input.data instanceof Float32Array) {
    return { tensor: await castToHalf(input.data, input.dims), temporary: true };
  }
  const data = convertTensorData(input.data, input.type, input.feedType);
  if (data === undefined) {
    throw new InvalidArgumentError({ field: 'type', value: input.type, expected: input.feedType });
  }
  return { tensor: new ort.Tensor(input.feedType, data, input.dims), temporary: false };
}

/** Identity sessions (one per element type and rank) that copy GPU tensors to the CPU. */
const readers = new Map<string, Promise<ort.InferenceSession>>();

function readerFor(type: TensorType, rank: number): Promise<ort.InferenceSession> {
  const key = `${type}/${rank}`;
  let reader = readers.get(key);
  if (reader === undefined) {
    // Default output location (CPU): running it is the GPU → CPU copy.
    const options = { ...sessionOptions(requireDevice(), settings), preferredOutputLocation: 'cpu' as const };
    reader = ort.InferenceSession.create(identityModel(type, rank), options);
    readers.set(key, reader);
  }
  return reader;
}

async function dataOf(tensor: ort.Tensor, asFloat32: boolean): Promise<TensorData> {
  let data: TensorData;
  if (tensor.location === 'cpu') {
    // The data may share its buffer with onnxruntime's output arena: copy before transfer.
    data = (tensor.data as TensorData).slice();
  } else {
    // Never tensor.getData() here: for a WebGPU buffer it aborts the process in onnxruntime-node.
    const reader = await readerFor(tensor.type as TensorType, tensor.dims.length);
    const { y } = await reader.run({ x: tensor });
    if (y === undefined) throw new InferenceError({ model: 'identity reader', message: 'no output' });
    data = y.data as TensorData;
  }
  if (asFloat32 && tensor.type === 'float16') return float16BitsToFloat32(data as Uint16Array);
  return data;
}

/** Sessions (one per float type) that turn decoded images into uint8 pixels on the CPU side. */
const pixelConverters = new Map<string, Promise<ort.InferenceSession>>();

/** `[f, 3, H, W]` decoded images in [-1, 1] → `[f, H, W, 3]` uint8 pixels, converted on the device. */
async function pixelsOf(model: string, name: string, tensor: ort.Tensor): Promise<WireOutput> {
  const type = tensor.type;
  if ((type !== 'float32' && type !== 'float16') || tensor.dims.length !== 4 || tensor.dims[1] !== 3) {
    throw new InvalidArgumentError({
      field: `readPixels (${model}.${name})`,
      value: `${type} [${tensor.dims.join(', ')}]`,
      expected: 'a float32 or float16 [f, 3, height, width] image output',
    });
  }
  let converter = pixelConverters.get(type);
  if (converter === undefined) {
    converter = ort.InferenceSession.create(imagePixelsModel(type), { ...sessionOptions(requireDevice(), settings), preferredOutputLocation: 'cpu' as const });
    pixelConverters.set(type, converter);
  }
  const { pixels } = await (await converter).run({ x: tensor });
  if (pixels === undefined) throw new InferenceError({ model: 'image pixels', message: 'no output' });
  return { type: 'uint8', dims: [...pixels.dims], data: (pixels.data as Uint8Array).slice() };
}

/** Weighted-sums sessions by element type, the groups' ranks and the term count. */
const weightedSums = new Map<string, Promise<ort.InferenceSession>>();

/** Tensors the runtime holds for no session set (`combine` and `hold` results): set id 0. */
const RUNTIME_SET = 0;

/** Keeps a tensor in the worker (on the device where it is) and describes it by handle. */
function keep(tensor: ort.Tensor, setId: number): WireOutput {
  const handle = nextHandle++;
  tensors.set(handle, { tensor, setId });
  return { type: tensor.type as TensorType, dims: [...tensor.dims], handle };
}

/** Reads a result to the host and frees it where it was; read as fp32, fp16 is an fp32 tensor from here on. */
async function readOut(tensor: ort.Tensor, asFloat32: boolean): Promise<WireOutput> {
  const type = tensor.type as TensorType;
  const output: WireOutput = { type: asFloat32 && type === 'float16' ? 'float32' : type, dims: [...tensor.dims], data: await dataOf(tensor, asFloat32) };
  if (tensor.location !== 'cpu') tensor.dispose();
  return output;
}

function releaseTensor(handle: number): void {
  const held = tensors.get(handle);
  if (held === undefined) return;
  tensors.delete(handle);
  if (held.tensor.location !== 'cpu') held.tensor.dispose();
}

/** One run of `loaded`: the `run` request's work (the handler counts it in `loaded.activeRuns`). */
async function runOn(loaded: LoadedSession, request: Extract<WorkerEnvelope, { op: 'run' }>): Promise<Record<string, WireOutput>> {
  const started = performance.now();
  const feeds: Record<string, ort.Tensor> = {};
  const temporaries: ort.Tensor[] = [];
  let results: ort.InferenceSession.ReturnType;
  try {
    for (const [name, input] of Object.entries(request.inputs)) {
      const { tensor, temporary } = await feed(input);
      feeds[name] = tensor;
      if (temporary) temporaries.push(tensor);
    }
    results = await loaded.session.run(feeds);
  } catch (error) {
    if (StreamDiffusionError.isInstance(error)) throw error;
    throw new InferenceError({ model: request.model, message: error instanceof Error ? error.message : String(error), cause: error });
  } finally {
    for (const tensor of temporaries) if (tensor.location !== 'cpu') tensor.dispose();
  }
  const outputs: Record<string, WireOutput> = {};
  for (const [name, tensor] of Object.entries(results)) {
    if (request.readPixels?.includes(name) === true) {
      try {
        outputs[name] = await pixelsOf(request.model, name, tensor);
      } finally {
        if (tensor.location !== 'cpu') tensor.dispose();
      }
    } else if (request.read.includes(name)) {
      outputs[name] = await readOut(tensor, request.readAsFloat32);
    } else {
      outputs[name] = keep(tensor, request.setId);
    }
  }
  counted(request.model, started);
  return outputs;
}

const handlers: { [Op in WorkerEnvelope['op']]: (request: Extract<WorkerEnvelope, { op: Op }>) => Promise<WorkerResults[Op]> } = {
  async init(request) {
    settings = request.settings;
    const choice = await resolveDevice(request.device, machineEnvironment(probe));
    device = choice.device;
    return choice;
  },
  async load(request) {
    const loaded = new Map<string, LoadedSession>();
    try {
      for (const model of request.models) loaded.set(model.name, await createSession(model.name, model));
    } catch (error) {
      // Load all or nothing: a half-loaded set would hold sessions nobody can release.
      await Promise.all([...loaded.values()].map(releaseSession));
      throw error;
    }
    sets.set(request.setId, loaded);
    return Object.fromEntries([...loaded].map(([name, { signature }]) => [name, signature]));
  },
  async run(request) {
    const loaded = setOf(request.setId).get(request.model);
    if (loaded === undefined) throw new DisposedError(`model "${request.model}"`);
    // Counted from here, so a replace or unload arriving while the inputs are fed still waits for it.
    const running = runOn(loaded, request);
    loaded.activeRuns.add(running);
    try {
      return await running;
    } finally {
      loaded.activeRuns.delete(running);
    }
  },
  async read(request) {
    const held = tensors.get(request.handle);
    if (held === undefined) throw new DisposedError(`tensor ${request.handle}`);
    return dataOf(held.tensor, request.asFloat32);
  },
  async combine(request) {
    const started = performance.now();
    const fed: { tensor: ort.Tensor; temporary: boolean }[][] = [];
    // One group alone keeps its messages short (`terms[0].weight`); several are told apart (`groups[2].terms[0]`).
    const label = (group: number): string => (request.groups.length > 1 ? `groups[${group}].` : '');
    try {
      if (request.groups.length === 0) throw new InvalidArgumentError({ field: 'groups', value: [], expected: 'at least one group of tensors' });
      for (const terms of request.groups) {
        const group: { tensor: ort.Tensor; temporary: boolean }[] = [];
        fed.push(group);
        for (const term of terms) group.push(await feed(term.input));
      }
      const count = fed[0]!.length;
      const type = fed[0]![0]?.tensor.type;
      for (const [group, terms] of fed.entries()) {
        const first = terms[0]?.tensor;
        if (first === undefined) throw new InvalidArgumentError({ field: `${label(group)}terms`, value: [], expected: 'at least one tensor' });
        if (terms.length !== count) throw new InvalidArgumentError({ field: `${label(group)}terms`, value: `${terms.length} tensors`, expected: `${count}, as many as groups[0]` });
        if (first.type !== 'float32' && first.type !== 'float16') {
          throw new InvalidArgumentError({ field: `${label(group)}terms[0].tensor.type`, value: first.type, expected: 'float32 or float16' });
        }
        for (const [index, { tensor }] of terms.entries()) {
          const weight = request.groups[group]![index]!.weight;
          if (typeof weight !== 'number' && (first.dims.length === 0 || weight.length !== first.dims[0])) {
            throw new InvalidArgumentError({
              field: `${label(group)}terms[${index}].weight`,
              value: `${weight.length} weights`,
              expected: `one number, or one per entry of axis 0 (${first.dims[0] ?? 'a scalar has none'})`,
            });
          }
          if (tensor.type !== type || (index > 0 && tensor.dims.join() !== first.dims.join())) {
            throw new InvalidArgumentError({
              field: `${label(group)}terms[${index}].tensor`,
              value: `${tensor.type} [${tensor.dims.join(', ')}]`,
              expected: `${type} [${first.dims.join(', ')}] like ${label(group)}terms[0]`,
            });
          }
        }
      }
      const elementType = type as 'float32' | 'float16';
      const ranks = fed.map((terms) => terms[0]!.tensor.dims.length);
      const key = `${elementType}/${ranks.join(',')}/${count}`;
      let session = weightedSums.get(key);
      if (session === undefined) {
        session = ort.InferenceSession.create(weightedSumsModel(elementType, ranks, count), sessionOptions(requireDevice(), settings));
        session.catch(() => weightedSums.delete(key));
        weightedSums.set(key, session);
      }
      const feeds: Record<string, ort.Tensor> = {};
      for (const [group, terms] of request.groups.entries()) {
        const dims = fed[group]![0]!.tensor.dims;
        for (const [index, term] of terms.entries()) {
          feeds[`x${group}_${index}`] = fed[group]![index]!.tensor;
          // One weight, or one per entry of axis 0: shaped [1 | b, 1, …] to broadcast.
          const weight = Float32Array.from(typeof term.weight === 'number' ? [term.weight] : term.weight);
          const weightDims = [weight.length, ...dims.slice(1).map(() => 1)];
          feeds[`w${group}_${index}`] = elementType === 'float16' ? new ort.Tensor('float16', float32ToFloat16Bits(weight), weightDims) : new ort.Tensor('float32', weight, weightDims);
        }
      }
      const outputs = await (await session).run(feeds);
      const sums = request.groups.map((_, group) => {
        const sum = outputs[`y${group}`];
        if (sum === undefined) throw new InferenceError({ model: 'weighted sums', message: `no output y${group}` });
        return sum;
      });
      const results: WireOutput[] = [];
      for (const sum of sums) results.push(request.read ? await readOut(sum, request.readAsFloat32) : keep(sum, RUNTIME_SET));
      counted('(combine)', started);
      return results;
    } finally {
      for (const { tensor, temporary } of fed.flat()) if (temporary && tensor.location !== 'cpu') tensor.dispose();
    }
  },
  async hold(request) {
    if (request.input.kind !== 'host') throw new InvalidArgumentError({ field: 'tensor', value: 'a RuntimeTensor', expected: 'host data to hold' });
    const started = performance.now();
    const { tensor } = await feed(request.input);
    counted('(hold)', started);
    return keep(tensor, RUNTIME_SET);
  },
  async release(request) {
    for (const handle of request.handles) releaseTensor(handle);
    return null;
  },
  async replace(request) {
    const set = setOf(request.setId);
    if (!set.has(request.name)) throw new DisposedError(`model "${request.name}"`);
    const next = await createSession(request.name, request);
    // The set may have been unloaded, or the model replaced, while the new session loaded: requests
    // are not queued. Replace what is there now, or give up if nothing is.
    const old = sets.get(request.setId) === set ? set.get(request.name) : undefined;
    if (old === undefined) {
      await releaseSession(next);
      throw new DisposedError(`model "${request.name}"`);
    }
    if (JSON.stringify(next.signature) !== JSON.stringify(old.signature)) {
      await releaseSession(next);
      throw new InvalidArgumentError({
        field: request.name,
        value: request.path,
        expected: `a model with the same inputs and outputs as the loaded ${request.name} (${describeSignature(old.signature)}); it has ${describeSignature(next.signature)}`,
      });
    }
    // New runs take the new session from here; the old one goes once the runs using it have ended.
    set.set(request.name, next);
    await releaseSession(old);
    return next.signature;
  },
  async unload(request) {
    const set = sets.get(request.setId);
    if (set === undefined) return null;
    sets.delete(request.setId);
    // Sessions first: their release waits for runs in flight, whose outputs are kept under this set.
    await Promise.all([...set.values()].map(releaseSession));
    for (const [handle, held] of tensors) if (held.setId === request.setId) releaseTensor(handle);
    return null;
  },
  async stats() {
    let gpuTensors = 0;
    for (const { tensor } of tensors.values()) if (tensor.location !== 'cpu') gpuTensors += 1;
    return { sessions: openSessions, tensors: tensors.size, gpuTensors, runs: Object.fromEntries(runs) };
  },
};

function transferables(result: unknown): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  const visit = (value: unknown): void => {
    if (ArrayBuffer.isView(value)) {
      const buffer = ownedBuffer(value);
      if (buffer !== undefined) buffers.push(buffer);
    } else if (typeof value === 'object' && value !== null) {
      for (const inner of Object.values(value)) visit(inner);
    }
  };
  visit(result);
  return buffers;
}

const port = parentPort;
if (port === null) throw new Error('inference-worker must be started as a worker thread');
port.on('message', (request: WorkerEnvelope) => {
  const handler = handlers[request.op] as (request: WorkerEnvelope) => Promise<unknown>;
  handler(request).then(
    (result) => {
      const response: WorkerResponse = { id: request.id, ok: true, result };
      port.postMessage(response, transferables(result));
    },
    (error: unknown) => {
      const response: WorkerResponse = { id: request.id, ok: false, error: errorToWire(error) };
      port.postMessage(response);
    },
  );
});
