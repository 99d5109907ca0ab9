/**
 * Hot LoRA on every onnxruntime device: a set of LoRA files with scales is merged into the model's
 * UNet and text encoder weights in memory (no re-export), and only the networks whose merged
 * weights changed are reloaded, beside the running stream (`LoadedModel.replaceWeights`: the new
 * session takes over between two frames; pipelines encode their prompts again when the text
 * encoder changed). Removing every LoRA loads the original files again.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hostTensor, InvalidArgumentError, parseArgument, type LoadedModel, type ModelSource, type Runtime, type SessionSet } from '@streamdiffusion/core';
import { z } from 'zod';
import { hashFile } from '../engines/engine-store.js';
import { decodeModel, encodeModel, layerWeights, type LayerWeight, type OnnxModelProto, type OnnxTensor } from '../onnx/onnx-model.js';
import { LORA_COMPONENTS, matchLora, type LoraComponent, type LoraLayer } from './lora-keys.js';
import { initializerBytes, initializerValues, lowRankFactors, mergeGraph, mergeInto, type ScaledLayer } from './lora-merge.js';
import { LoraFileError, parseSafetensors, readSafetensorsBytes, unreadableLoraFile, type Safetensors } from './safetensors.js';

/** One LoRA of a set. */
export const loraEntrySchema = z
  .object({
    path: z.string().min(1).describe('A LoRA .safetensors file (kohya or diffusers/PEFT tensor names) for this model family.'),
    scale: z
      .number()
      .min(-10)
      .max(10)
      .default(1)
      .describe('How strongly it applies: W + scale·(α/rank)·up·down (−10 to 10; 0 leaves it out). Hot: merged again in memory, no re-export.'),
  })
  .strict();
export type LoraEntry = z.input<typeof loraEntrySchema>;

/** The LoRA set: hot on the ORT devices; a TensorRT engine is refit or rebuilt for it. */
export const lorasSchema = z.array(loraEntrySchema).describe('LoRAs merged into the UNet and text encoder weights, in order.');

export interface LoraApplyReport {
  /** The networks reloaded with new weights (an unchanged network is not touched). */
  readonly reloaded: readonly LoraComponent[];
  /** How many layers each LoRA changes. */
  readonly layers: readonly { readonly path: string; readonly unet: number; readonly text_encoder: number }[];
  /** LoRA modules no layer of the model matched, per file. */
  readonly unmatched: readonly { readonly path: string; readonly modules: readonly string[] }[];
  /** Milliseconds: reading the files, merging, encoding the models, reloading the sessions. */
  readonly timings: { readonly read: number; readonly merge: number; readonly encode: number; readonly reload: number; readonly total: number };
}

export interface HotLora {
  /** Applies this LoRA set (replacing the last one): `[]` takes every LoRA out. */
  apply(loras: readonly LoraEntry[]): Promise<LoraApplyReport>;
  /** The set applied last. */
  readonly active: readonly Required<LoraEntry>[];
}

interface Network {
  readonly path: string;
  /** The file's bytes; inline weights are views into them. */
  readonly file: Uint8Array;
  readonly model: OnnxModelProto;
  readonly layers: Map<string, LayerWeight>;
  readonly initializers: Map<string, OnnxTensor>;
  /** Each initializer changed so far: its original fields (to restore) and values. */
  readonly originals: Map<string, { readonly fields: OnnxTensor; readonly values: Float32Array }>;
  /** What was merged in last (JSON), so an unchanged set costs nothing. */
  applied: string;
}

/** The hash of a LoRA set (file contents and scales): part of a TensorRT engine's key. */
export async function loraSetHash(loras: readonly LoraEntry[]): Promise<string> {
  const hash = createHash('sha256');
  for (const entry of loras.map((item) => loraEntrySchema.parse(item))) hash.update(`${await loraFileHash(entry.path)}:${entry.scale};`);
  return hash.digest('hex');
}

/** A file's size and time: while they stay, it is taken to be the same file. */
async function stampOf(path: string): Promise<string> {
  try {
    const info = await stat(path);
    return `${info.size}:${info.mtimeMs}`;
  } catch (error) {
    throw unreadableLoraFile(path, error);
  }
}

/** sha256 of LoRA files' bytes by path (strings only: a process may hash many files). */
const fileHashes = new Map<string, { readonly stamp: string; readonly sha256: string }>();

/** sha256 of a LoRA file's bytes, streamed (not decoded), once while it does not change on disk. */
async function loraFileHash(path: string): Promise<string> {
  const stamp = await stampOf(path);
  const known = fileHashes.get(path);
  if (known?.stamp === stamp) return known.sha256;
  let sha256: string;
  try {
    sha256 = await hashFile(path);
  } catch (error) {
    throw unreadableLoraFile(path, error);
  }
  fileHashes.set(path, { stamp, sha256 });
  return sha256;
}

interface LoraFile {
  /** sha256 of the file's bytes (as {@link loraSetHash} hashes it). */
  readonly sha256: string;
  readonly content: Safetensors;
  readonly stamp: string;
}

/** A LoRA file decoded, read once (into `cache`) while it does not change on disk. */
async function readLoraFile(path: string, cache: Map<string, LoraFile>): Promise<LoraFile> {
  const stamp = await stampOf(path);
  const cached = cache.get(path);
  if (cached?.stamp === stamp) return cached;
  const bytes = await readSafetensorsBytes(path);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  fileHashes.set(path, { stamp, sha256 });
  const file = { sha256, content: parseSafetensors(bytes, path), stamp };
  cache.set(path, file);
  return file;
}

/** What a merge made: a model source per network whose weights changed since the last merge. */
export interface LoraMerge {
  /** The original file for a network the set leaves alone, else its bytes with the set merged in. */
  readonly sources: Readonly<Partial<Record<LoraComponent, ModelSource>>>;
  readonly entries: readonly Required<LoraEntry>[];
  readonly layers: LoraApplyReport['layers'];
  readonly unmatched: LoraApplyReport['unmatched'];
  readonly timings: { readonly read: number; readonly merge: number; readonly encode: number };
}

/**
 * Merges LoRA sets into a model's UNet and text encoder files in memory, each set from the original
 * weights (so rescaling and removing are exact). Used by hot LoRA and by TensorRT refits.
 */
export interface LoraMerger {
  /** The networks whose merged weights differ from the last merge's (the first merge: from the files). */
  merge(loras: readonly LoraEntry[]): Promise<LoraMerge>;
  /** Forgets what was merged last for these networks (their sessions did not take the merge). */
  forget(components: readonly LoraComponent[]): void;
}

export interface LoraOptions {
  /** Progress lines (reading big models, merging, encoding); silent by default. */
  readonly log?: (line: string) => void;
  /**
   * Where the merge's arithmetic runs: on this runtime's device (one MatMul and Add per layer, on
   * the GPU or onnxruntime's threaded CPU kernels); without one, in JavaScript on this thread.
   * `createHotLora` uses the model's runtime.
   */
  readonly runtime?: Runtime;
}


/** The merged weight's bytes in its element type: `w + Σ factor·up·down`, on the runtime's device when there are sessions. */
async function mergedBytes(values: Float32Array, weight: LayerWeight, changes: readonly ScaledLayer[], session: Promise<SessionSet<'merge'>> | undefined): Promise<Uint8Array> {
  if (session === undefined) return initializerBytes(mergeInto(values, weight, changes), weight.dataType);
  const { a, b, rows, cols, rank } = lowRankFactors(values, weight, changes);
  const { y } = await (await session).run('merge', { w: hostTensor(values, [rows, cols]), a: hostTensor(a, [rows, rank]), b: hostTensor(b, [rank, cols]) }, { read: ['y'], readAsFloat32: false });
  const data = await y!.data();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

const megabytes = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/**
 * A merger for a model's networks (`{ unet, text_encoder }`: their `.onnx` files; a TensorRT refit
 * gives the UNet only). They must have been exported with layer names (the export tool does; a
 * `--compact-graph` export has none).
 */
export async function createLoraMerger(files: Readonly<Partial<Record<LoraComponent, string>>>, options: LoraOptions = {}): Promise<LoraMerger> {
  const log = options.log ?? ((): void => undefined);
  const components = LORA_COMPONENTS.filter((component) => files[component] !== undefined);
  const networks: Partial<Record<LoraComponent, Network>> = {};
  /** This merger's decoded LoRA files by path: those of its last merged set. */
  const loraFiles = new Map<string, LoraFile>();
  for (const component of components) {
    const path = files[component]!;
    const started = performance.now();
    const file = await readFile(path);
    const proto = decodeModel(file);
    const layers = layerWeights(proto, component);
    if (layers.size === 0) {
      throw new InvalidArgumentError({ field: 'model', value: path, expected: `an ONNX ${component} whose nodes carry the exporter's layer names (/…/to_q/MatMul); this one has none (a --compact-graph export?), so no LoRA can find its layers` });
    }
    networks[component] = { path, file, model: proto, layers, initializers: new Map((proto.graph?.initializer ?? []).map((tensor) => [tensor.name ?? '', tensor])), originals: new Map(), applied: '[]' };
    log(`lora: read ${component} (${layers.size} layers) in ${Math.round(performance.now() - started)} ms`);
  }

  const merge = async (loras: readonly LoraEntry[]): Promise<LoraMerge> => {
    const started = performance.now();
    const entries = parseArgument(lorasSchema, loras, 'loras').map((entry) => ({ path: entry.path, scale: entry.scale }));
    // Read and match every file first: a bad one leaves everything as it was.
    const loaded = await Promise.all(entries.map(async (entry) => ({ entry, file: await readLoraFile(entry.path, loraFiles) })));
    // Files of earlier sets are not kept decoded (a long-running process switches through many); they are read again if asked for.
    for (const path of loraFiles.keys()) if (!entries.some((entry) => entry.path === path)) loraFiles.delete(path);
    const read = performance.now() - started;
    const layerMaps = { unet: networks.unet?.layers ?? new Map<string, never>(), text_encoder: networks.text_encoder?.layers ?? new Map<string, never>() };
    const matched = loaded.map(({ entry, file }) => {
      const match = matchLora(file.content, layerMaps);
      if (match.layers.length === 0) {
        const example = [...file.content.tensors.keys()][0] ?? '(no tensors)';
        throw new LoraFileError({ path: entry.path, problem: `no layer of this model matches its tensors (${file.content.tensors.size} tensors, the first ${example}; this model's layers look like ${[...layerMaps.unet.keys(), ...layerMaps.text_encoder.keys()][0] ?? '?'}): not a LoRA, or one for another model family` });
      }
      return { entry, file, match };
    });
    let mergeMs = 0;
    let encodeMs = 0;
    const sources: Partial<Record<LoraComponent, ModelSource>> = {};
    // The merge graph of each weight type on the runtime's device: made when a layer first needs it, released when the merge ends.
    const mergeSessions = new Map<number, Promise<SessionSet<'merge'>>>();
    const sessionFor = (dataType: number): Promise<SessionSet<'merge'>> | undefined => {
      if (options.runtime === undefined) return undefined;
      let session = mergeSessions.get(dataType);
      if (session === undefined) {
        session = options.runtime.loadSessions({ merge: { path: join('/@streamdiffusion/tensorrt', `lora-merge-${dataType}.onnx`), bytes: mergeGraph(dataType) } });
        mergeSessions.set(dataType, session);
      }
      return session;
    };
    try {
      for (const component of components) {
        const network = networks[component]!;
        const changes = new Map<string, ScaledLayer[]>();
        for (const { entry, match } of matched) {
          if (entry.scale === 0) continue;
          for (const layer of match.layers) if (layer.component === component) changes.set(layer.module, [...(changes.get(layer.module) ?? []), { layer, scale: entry.scale, path: entry.path }]);
        }
        const signature = JSON.stringify(matched.filter(({ entry, match }) => entry.scale !== 0 && match.layers.some((layer) => layer.component === component)).map(({ entry, file }) => [file.sha256, entry.scale]));
        if (signature === network.applied) continue;
        const mergeStarted = performance.now();
        // Back to the original weights, then the set's changes on top.
        for (const [name, { fields }] of network.originals) Object.assign(network.initializers.get(name)!, fields);
        // Weights stored inline are patched into a copy of the file at their own offsets (same size);
        // only weights in external data files make the model be encoded again (they move inline).
        const patches: { readonly offset: number; readonly bytes: Uint8Array }[] = [];
        let encodeAgain = false;
        for (const [module, layerChanges] of changes) {
          const weight = network.layers.get(module)!;
          const tensor = network.initializers.get(weight.initializer)!;
          let original = network.originals.get(weight.initializer);
          if (original === undefined) {
            original = { fields: { rawData: tensor.rawData, floatData: tensor.floatData, externalData: tensor.externalData, dataLocation: tensor.dataLocation }, values: await initializerValues(tensor, network.path) };
            network.originals.set(weight.initializer, original);
          }
          const merged = await mergedBytes(original.values, weight, layerChanges, sessionFor(weight.dataType));
          const inline = original.fields.rawData;
          if (tensor.dataLocation !== 1 && inline !== undefined && inline.buffer === network.file.buffer && inline.byteLength === merged.byteLength) {
            patches.push({ offset: inline.byteOffset - network.file.byteOffset, bytes: merged });
          } else {
            encodeAgain = true;
          }
          Object.assign(tensor, { rawData: merged, floatData: [], externalData: [], dataLocation: 0 });
        }
        const encodeStarted = performance.now();
        mergeMs += encodeStarted - mergeStarted;
        let bytes: Uint8Array | undefined;
        if (changes.size > 0 && encodeAgain) bytes = encodeModel(network.model);
        else if (changes.size > 0) {
          bytes = new Uint8Array(network.file);
          for (const patch of patches) bytes.set(patch.bytes, patch.offset);
        }
        sources[component] = bytes === undefined ? { path: network.path } : { path: network.path, bytes };
        encodeMs += performance.now() - encodeStarted;
        log(`lora: ${component}: ${changes.size} layers merged in ${Math.round(encodeStarted - mergeStarted)} ms, ${bytes === undefined ? 'back to the original file' : `encoded (${megabytes(bytes.byteLength)}) in ${Math.round(performance.now() - encodeStarted)} ms`}`);
        network.applied = signature;
      }
    } finally {
      for (const session of mergeSessions.values()) await (await session.catch(() => undefined))?.dispose();
    }
    const count = (layers: readonly LoraLayer[], component: LoraComponent): number => layers.filter((layer) => layer.component === component).length;
    return {
      sources,
      entries,
      layers: matched.map(({ entry, match }) => ({ path: entry.path, unet: count(match.layers, 'unet'), text_encoder: count(match.layers, 'text_encoder') })),
      unmatched: matched.filter(({ match }) => match.unmatched.length > 0).map(({ entry, match }) => ({ path: entry.path, modules: match.unmatched })),
      timings: { read, merge: mergeMs, encode: encodeMs },
    };
  };

  return {
    merge,
    forget(components) {
      for (const component of components) {
        const network = networks[component];
        if (network !== undefined) network.applied = 'unknown';
      }
    },
  };
}

/**
 * Hot LoRA for a loaded model: `apply([{ path, scale }])` merges, `apply([])` removes; only the
 * networks whose merged weights changed are reloaded, beside the running stream.
 */
export async function createHotLora(model: LoadedModel, options: LoraOptions = {}): Promise<HotLora> {
  const merger = await createLoraMerger({ unet: model.folder.models.unet, text_encoder: model.folder.models.text_encoder }, { runtime: model.runtime, ...options });
  let active: Required<LoraEntry>[] = [];
  let applying: Promise<unknown> = Promise.resolve();

  const apply = async (loras: readonly LoraEntry[]): Promise<LoraApplyReport> => {
    const started = performance.now();
    const merged = await merger.merge(loras);
    const reloaded = Object.keys(merged.sources) as LoraComponent[];
    const reloadStarted = performance.now();
    try {
      await model.replaceWeights(merged.sources);
    } catch (error) {
      // The sessions kept what they had: the next apply must merge again.
      merger.forget(reloaded);
      throw error;
    }
    const reload = performance.now() - reloadStarted;
    options.log?.(`lora: reloaded ${reloaded.join(', ') || 'nothing'} in ${Math.round(reload)} ms`);
    active = [...merged.entries];
    return { reloaded, layers: merged.layers, unmatched: merged.unmatched, timings: { ...merged.timings, reload, total: performance.now() - started } };
  };

  return {
    // One apply at a time: each starts from the state the last one left.
    apply(loras) {
      const run = applying.then(() => apply(loras), () => apply(loras));
      applying = run.catch(() => undefined);
      return run;
    },
    get active() {
      return active;
    },
  };
}
