/**
 * The IP-Adapter wrapper (a `UNetWrapperV1`): style images steer the UNet through image tokens
 * appended after the 77 text tokens, weighted per cross-attention layer and per batch entry by the
 * UNet's `ip_adapter_scale` input. The tokens are made when the style changes (encoder, blend,
 * projection), never per frame; per UNet run the wrapper only lays out the tokens it holds and the
 * scale rows. Off (`enabled: false`, no style image, or a step outside the range) feeds zero tokens
 * and zero scale: the shapes stay, the UNet computes exactly what it computes without an adapter.
 */
import {
  hostTensor,
  InvalidArgumentError,
  ModelFolderError,
  parseArgument,
  UNET_INPUTS,
  type PreparedWrapperUpdateV1,
  type UNetWrapperV1,
  type WrapperPipelineV1,
  type WrapperUnetCallV1,
} from '@streamdiffusion/core';
import { findAdapterFiles, readUnetIpAdapter, type AdapterFiles, type UnetIpAdapterConfig } from './adapter-folder.js';
import { createImageEmbedder, type ImageEmbedder } from './image-embedder.js';
import { ipAdaptersField, styleImagesOf, type IpAdapterEntry, type IpAdapterEntryInput, type IpAdapterParameters } from './ip-adapter-parameters.js';
import { layerWeights, stepFactor } from './weight-types.js';

/** Options of {@link createIpAdapter}. */
export interface IpAdapterOptions {
  /** The IP-Adapter, as config files write it (one entry; defaults filled in). */
  readonly ipadapters: readonly IpAdapterEntryInput[];
}

/** The IP-Adapter wrapper, with what it has loaded. */
export interface IpAdapterWrapper extends UNetWrapperV1<IpAdapterParameters> {
  /** Its one field, typed with its input (so `update({ ipadapters: [{ ipadapter_model_path, scale }] })` may leave defaults out). */
  readonly parameters: { readonly ipadapters: ReturnType<typeof ipAdaptersField> };
  /** The adapter's kind and image tokens, and the UNet's IP layers once attached. */
  describe(): { readonly kind: 'regular' | 'plus'; readonly tokens: number; readonly layers: readonly string[] };
  /** How many style images the encoder has embedded (each image once; the rest came from the cache). */
  encoderRuns(): number;
}

/** What one committed entry needs per UNet run. */
interface Active {
  readonly entry: IpAdapterEntry;
  /** Conditional tokens `[N, D]`; undefined without a style image. */
  readonly tokens: Float32Array | undefined;
  /** Per-layer weights (scale × preset). */
  readonly layers: Float32Array;
  /**
   * What UNet runs were given, by their layout (batch entries' CFG side and steps): a stream runs
   * the same few layouts every frame, so each is laid out once while this entry is in force.
   */
  readonly runs: Map<string, { readonly tokens: Float32Array; readonly scale: Float32Array }>;
}

const RELOAD_KEYS = ['ipadapter_model_path', 'image_encoder_path', 'type'] as const;

/**
 * Makes the IP-Adapter wrapper. Pass it to `createStreamDiffusion({ model, wrappers: [ipAdapter] })`
 * with a model folder whose UNet carries this adapter's attention (the export tool's `--ip-adapter`).
 * Reads the adapter's projection config (its token count); the models load when the pipeline attaches it.
 * @throws {InvalidArgumentError} naming the key of a bad entry; {@link ModelFolderError} when the adapter's files are not there.
 */
export async function createIpAdapter(options: IpAdapterOptions): Promise<IpAdapterWrapper> {
  const [first] = parseArgument(ipAdaptersField([]), options.ipadapters, 'ipadapters');
  if (first === undefined) {
    throw new InvalidArgumentError({ field: 'ipadapters', value: [], expected: 'one IP-Adapter entry (turn it off with enabled: false; the UNet still needs its image tokens)' });
  }
  const files: AdapterFiles = await findAdapterFiles(first.ipadapter_model_path, first.image_encoder_path);
  const kind = files.projectionConfig.kind;
  if (first.type !== undefined && first.type !== kind) {
    throw new InvalidArgumentError({ field: 'ipadapters.0.type', value: first.type, expected: `the kind of the adapter at ${first.ipadapter_model_path} (${kind})` });
  }
  const tokenCount = files.projectionConfig.image_tokens;
  let pipeline: WrapperPipelineV1 | undefined;
  let unet: UnetIpAdapterConfig | undefined;
  let embedder: ImageEmbedder | undefined;
  let active: Active | undefined;

  const attached = (): { pipeline: WrapperPipelineV1; unet: UnetIpAdapterConfig; embedder: ImageEmbedder } => {
    if (pipeline === undefined || unet === undefined || embedder === undefined) {
      throw new InvalidArgumentError({ field: 'ip-adapter', value: 'not attached', expected: 'a wrapper passed to createStreamDiffusion' });
    }
    return { pipeline, unet, embedder };
  };

  /**
   * Everything a committed entry needs, made now (the encoder and projection run here, off the frame
   * path, and only for a blend the embedder has not made before).
   */
  const prepare = async (entry: IpAdapterEntry): Promise<Active> => {
    const { unet: layersOf, embedder: images } = attached();
    const weights = layerWeights(entry.weight_type, layersOf.layers, entry.scale, entry.composition_scale ?? entry.scale);
    const styles = styleImagesOf(entry);
    const field = entry.style_image !== undefined ? 'ipadapters.0.style_image' : 'ipadapters.0.style_images';
    const tokens = styles.length === 0 ? undefined : await images.tokensFor(styles, field);
    return { entry, tokens, layers: weights, runs: new Map() };
  };

  const wrapper: IpAdapterWrapper = {
    specVersion: 1,
    name: 'ip-adapter',
    parameters: { ipadapters: ipAdaptersField([first]) },
    unetInputs: [UNET_INPUTS.ipAdapterScale],
    extraTokens: tokenCount,
    frameImages: [],
    models: () => [
      { name: 'image-encoder', path: files.encoder },
      { name: 'image-projection', path: files.projection },
    ],
    describe: () => ({ kind, tokens: tokenCount, layers: unet?.layers ?? [] }),
    encoderRuns: () => embedder?.encoderRuns() ?? 0,

    async attach(given) {
      const description = await readUnetIpAdapter(given.model.folder.root);
      const unetPath = given.model.folder.models.unet;
      if (description.scale_input !== UNET_INPUTS.ipAdapterScale) {
        throw new ModelFolderError({ problem: 'bad-config', path: unetPath, message: `unet/ip_adapter.json names the scale input ${description.scale_input}; the runtime feeds ${UNET_INPUTS.ipAdapterScale}` });
      }
      const scaleInput = given.model.sessions.signatures.unet.inputs.find((input) => input.name === UNET_INPUTS.ipAdapterScale);
      const layerCount = scaleInput?.shape[1];
      if (scaleInput === undefined || scaleInput.shape.length !== 2 || (typeof layerCount === 'number' && layerCount !== description.layers.length)) {
        throw new ModelFolderError({
          problem: 'bad-signature',
          path: unetPath,
          message: `the UNet's ${description.scale_input} should be [batch, ${description.layers.length}] (one scale per entry and cross-attention layer, as unet/ip_adapter.json lists them); it is ${scaleInput === undefined ? 'missing' : `[${scaleInput.shape.join(', ')}]`}`,
        });
      }
      if (description.attention_id !== files.projectionConfig.attention_id) {
        throw new ModelFolderError({
          problem: 'bad-config',
          path: files.projection,
          message: `this IP-Adapter (${files.projectionConfig.source ?? files.projectionConfig.attention_id}) is not the one the UNet's attention was exported with (${description.source ?? description.attention_id}); use the adapter the model folder was exported with, or export the model with this one`,
        });
      }
      const width = given.model.capabilities.textEmbeddingWidth;
      if (files.projectionConfig.cross_attention_dim !== width) {
        throw new ModelFolderError({ problem: 'bad-config', path: files.projection, message: `makes ${files.projectionConfig.cross_attention_dim}-wide tokens; the model's text embeddings are ${width} wide` });
      }
      const loaded = await createImageEmbedder(given.runtime, files);
      pipeline = given;
      unet = description;
      embedder = loaded;
      try {
        active = await prepare(first);
      } catch (error) {
        pipeline = undefined;
        unet = undefined;
        embedder = undefined;
        await loaded.dispose();
        throw error;
      }
    },

    getState: () => ({ ipadapters: active === undefined ? [first] : [{ ...active.entry }] }),

    async prepareUpdate(changes): Promise<PreparedWrapperUpdateV1> {
      const wanted = changes.ipadapters;
      const unchanged = { applied: [], needsReload: [], commit: () => undefined, abandon: async () => undefined };
      if (wanted === undefined) return unchanged;
      const entries = ipAdaptersField([]).parse(wanted);
      const entry = entries[0];
      const current = active?.entry ?? first;
      // Another adapter, encoder or kind (or none) is another UNet: a new pipeline. A left-out type is the adapter's own.
      const reloadKey = (of: IpAdapterEntry, key: (typeof RELOAD_KEYS)[number]): string | undefined => (key === 'type' ? (of.type ?? kind) : of[key]);
      if (entry === undefined || RELOAD_KEYS.some((key) => reloadKey(entry, key) !== reloadKey(current, key))) return { ...unchanged, needsReload: ['ipadapters'] };
      const next = await prepare(entry);
      return {
        applied: sameEntry(entry, current) ? [] : ['ipadapters'],
        needsReload: [],
        commit: () => {
          active = next;
        },
        abandon: async () => undefined,
      };
    },

    async unetCall(call: WrapperUnetCallV1) {
      const { unet: description, embedder: images } = attached();
      const layerCount = description.layers.length;
      const current = active;
      const layout = `${call.stepCount}:${call.steps.join(',')}:${call.unconditional.map((side) => (side ? 'u' : 'c')).join('')}`;
      let run = current?.runs.get(layout);
      if (run === undefined) {
        const row = tokenCount * images.width;
        const tokens = new Float32Array(call.batch * row);
        const scale = new Float32Array(call.batch * layerCount);
        if (current !== undefined && current.entry.enabled && current.tokens !== undefined) {
          const range = { start: current.entry.start_at, end: current.entry.end_at };
          for (let entry = 0; entry < call.batch; entry += 1) {
            tokens.set(call.unconditional[entry] === true ? images.unconditional : current.tokens, entry * row);
            const factor = stepFactor(current.entry.step_schedule, call.steps[entry]!, call.stepCount, range);
            for (let layer = 0; layer < layerCount; layer += 1) scale[entry * layerCount + layer] = current.layers[layer]! * factor;
          }
        }
        run = { tokens, scale };
        current?.runs.set(layout, run);
      }
      // The same arrays every frame of a layout: core reuses the hidden states it merged from them.
      return { inputs: { [UNET_INPUTS.ipAdapterScale]: hostTensor(run.scale, [call.batch, layerCount]) }, tokens: run.tokens };
    },

    async dispose() {
      const loaded = embedder;
      embedder = undefined;
      active = undefined;
      await loaded?.dispose();
    },
  };
  return wrapper;
}

/** Whether two entries are the same (style images given as pixels compared by identity, not content). */
function sameEntry(a: IpAdapterEntry, b: IpAdapterEntry): boolean {
  const pixels: unknown[][] = [[], []];
  const text = (entry: IpAdapterEntry, seen: unknown[]): string =>
    JSON.stringify(entry, (_key, value: unknown) => {
      if (typeof value !== 'object' || value === null || !((value as { data?: unknown }).data instanceof Uint8Array)) return value;
      seen.push(value);
      return '<pixels>';
    });
  return text(a, pixels[0]!) === text(b, pixels[1]!) && pixels[0]!.every((image, index) => image === pixels[1]![index]);
}
