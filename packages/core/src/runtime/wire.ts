import type { WireError } from '../errors/error-wire.js';
import type { DeviceChoice, DeviceRequest } from './devices.js';
import type { TensorData, TensorType } from './dtypes.js';
import type { ModelSignature } from './model-signature.js';

/** Settings of the WebGPU provider that onnxruntime-node accepts. */
export interface WebGpuSettings {
  /**
   * Default NHWC: on an H200 the SD-Turbo UNet ran in 85 ms with NHWC against 162 ms with NCHW
   * (docs/measurements/2026-11-24-bench).
   */
  readonly preferredLayout?: 'NCHW' | 'NHWC';
  readonly validationMode?: 'disabled' | 'wgpuOnly' | 'basic' | 'full';
}

/** Session settings shared by every model of a runtime. */
export interface SessionSettings {
  /** Threads for one operator on the CPU; onnxruntime's default when absent. */
  readonly intraOpThreads?: number;
  readonly webgpu?: WebGpuSettings;
  /**
   * onnxruntime's profiler for the models (not the runtime's own helper graphs): each session
   * writes `<prefix>_<date>.json` (Chrome trace format) when it is released. For benchmarks.
   */
  readonly profileFilePrefix?: string;
}

/** An input as sent to the worker: host data, or a tensor the worker already holds. */
export type WireInput =
  | { readonly kind: 'host'; readonly type: TensorType; readonly feedType: TensorType; readonly dims: readonly number[]; readonly data: TensorData }
  | { readonly kind: 'resident'; readonly handle: number };

/** An output as returned by the worker: data when it was read, a handle when it stays. */
export interface WireOutput {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly handle?: number;
  readonly data?: TensorData;
}

/**
 * Where a model comes from: its `.onnx` file, or that file's content changed in memory (`bytes`,
 * e.g. with LoRA weights merged in) whose external `.onnx_data` weights are still found beside `path`.
 * Bytes that fill their own ArrayBuffer are handed to the inference worker, not copied: after a
 * load or replace, the caller's `bytes` is detached (empty).
 */
export interface ModelSource {
  readonly path: string;
  readonly bytes?: Uint8Array;
}

/** Requests the main thread sends to the inference worker. */
export type WorkerRequest =
  | { readonly op: 'init'; readonly device: DeviceRequest; readonly settings: SessionSettings }
  | { readonly op: 'load'; readonly setId: number; readonly models: readonly ({ readonly name: string } & ModelSource)[] }
  | ({ readonly op: 'replace'; readonly setId: number; readonly name: string } & ModelSource)
  | {
      readonly op: 'run';
      readonly setId: number;
      readonly model: string;
      readonly inputs: Readonly<Record<string, WireInput>>;
      readonly read: readonly string[];
      readonly readAsFloat32: boolean;
      /** Outputs to bring back as `[f, H, W, 3]` uint8 pixels (decoded images in [-1, 1]). */
      readonly readPixels?: readonly string[];
    }
  | { readonly op: 'read'; readonly handle: number; readonly asFloat32: boolean }
  | {
      readonly op: 'combine';
      /** Independent weighted sums, computed in one session run. */
      readonly groups: readonly (readonly { readonly input: WireInput; readonly weight: number | readonly number[] }[])[];
      readonly read: boolean;
      readonly readAsFloat32: boolean;
    }
  | { readonly op: 'hold'; readonly input: WireInput }
  | { readonly op: 'release'; readonly handles: readonly number[] }
  | { readonly op: 'unload'; readonly setId: number }
  | { readonly op: 'stats' };

/** What each request answers with. */
export interface WorkerResults {
  init: DeviceChoice;
  load: Record<string, ModelSignature>;
  replace: ModelSignature;
  run: Record<string, WireOutput>;
  read: TensorData;
  combine: WireOutput[];
  hold: WireOutput;
  release: null;
  unload: null;
  stats: RuntimeStats;
}

/** What a runtime's worker holds right now. */
export interface RuntimeStats {
  /**
   * Model sessions onnxruntime holds: counted when loaded, uncounted only once onnxruntime has
   * released them (the runtime's own small helper sessions are not counted).
   */
  readonly sessions: number;
  /** Model outputs held for later runs or reads. */
  readonly tensors: number;
  /** Of those, how many live in GPU memory (WebGPU `gpu-buffer`); 0 on the CPU. */
  readonly gpuTensors: number;
  /**
   * Model runs so far by model name, with the milliseconds spent inside the worker on each
   * (onnxruntime's run plus copying the outputs that were read): the time models took, without
   * the messaging and host math around them. The runtime's own work is counted too, as
   * `(combine)` (weighted sums) and `(hold)` (host data moved in to stay).
   */
  readonly runs: Readonly<Record<string, { readonly count: number; readonly ms: number }>>;
}

/** A request with the id its answer carries back. */
export type WorkerEnvelope = WorkerRequest & { readonly id: number };

/** The worker's answer to one request. */
export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: WireError };

/**
 * The ArrayBuffer a view fills exactly, which can be transferred to or from the worker instead of
 * copied; undefined when the view is part of a larger (or shared) buffer.
 */
export function ownedBuffer(view: ArrayBufferView): ArrayBuffer | undefined {
  return view.buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? view.buffer : undefined;
}
