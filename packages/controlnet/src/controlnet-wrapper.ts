/**
 * The ControlNet wrapper (a `UNetWrapperV1`): one or more ControlNets steer the UNet through the 13
 * residual inputs (12 down-block skips and the mid block). Per UNet run, every active ControlNet
 * sees the latents, the timesteps, the 77 text tokens only (never a wrapper's extra tokens) and its
 * control image in [0, 1]; its residuals are scaled by `conditioning_scale` outside the model and
 * summed where they live (on the GPU on WebGPU). With none active, all-zero residuals keep the
 * UNet's inputs fed.
 */
import { join } from 'node:path';
import {
  hostTensor,
  InvalidArgumentError,
  ModelFolderError,
  parseArgument,
  tensorToImage,
  UNET_INPUTS,
  type HostTensor,
  type PreparedWrapperUpdateV1,
  type RgbImage,
  type RuntimeTensor,
  type SessionSet,
  type TensorType,
  type UNetWrapperV1,
  type WrapperFrameV1,
  type WrapperPipelineV1,
  type WrapperUnetCallV1,
} from '@streamdiffusion/core';
import { controlNetEntrySchema, controlNetsField, type ControlNetEntry, type ControlNetEntryInput, type ControlNetParameters } from './controlnet-parameters.js';
import type { AnyPreprocessorDefinition, PreprocessorInstance } from './preprocessors/preprocessor.js';
import { parsePreprocessorParameters } from './preprocessors/preprocessor-parameters.js';
import { PREPROCESSOR_NAMES, PREPROCESSORS, preprocessorNamed } from './preprocessors/preprocessors.js';

/** The residual inputs of a UNet made for ControlNet, in order (DESIGN.md §3). */
export const RESIDUAL_INPUTS: readonly string[] = Object.freeze([
  ...Array.from({ length: 12 }, (_, index) => `${UNET_INPUTS.downBlockResidualPrefix}${index}`),
  UNET_INPUTS.midBlockResidual,
]);

/** Options of {@link createControlNet}. */
export interface ControlNetOptions {
  /** The ControlNets to start with (config-file keys; defaults filled in). */
  readonly controlnets?: readonly ControlNetEntryInput[];
  /**
   * Preprocessors of your own, by the name entries use in `preprocessor`, beside the built-in ones
   * (a name of a built-in one is refused). Each is a `PreprocessorDefinition`: a zod schema for its
   * `preprocessor_params`, a `create` that loads what it needs, and `usesPreviousOutput` when it
   * cannot run before the frame before it has finished.
   */
  readonly preprocessors?: Readonly<Record<string, AnyPreprocessorDefinition>>;
}

/** One loaded ControlNet with its preprocessor. */
interface Unit {
  readonly entry: ControlNetEntry;
  readonly sessions: SessionSet<'controlnet'>;
  /** Channels of `controlnet_cond`: 3, or 6 (the previous output, then the control image). */
  readonly channels: 3 | 6;
  /** The element type of `controlnet_cond` (float16 for an fp16 export). */
  readonly conditioningType: TensorType;
  readonly definition: AnyPreprocessorDefinition;
  readonly preprocessor: PreprocessorInstance<object>;
  readonly parameters: object;
}

/** The ControlNet wrapper, with what it has loaded. */
export interface ControlNetWrapper extends UNetWrapperV1<ControlNetParameters> {
  /** Its one field, typed with its input (so `update({ controlnets: [{ model_id }] })` may leave defaults out). */
  readonly parameters: { readonly controlnets: ReturnType<typeof controlNetsField> };
  /** The ControlNets in force, in order, with the conditioning channels each takes. */
  loaded(): readonly { readonly modelId: string; readonly channels: 3 | 6; readonly preprocessor: string }[];
}

const CONTROLNET_INPUTS = ['sample', 'timestep', 'encoder_hidden_states', 'controlnet_cond'] as const;

function modelPath(modelId: string): string {
  return modelId.endsWith('.onnx') ? modelId : join(modelId, 'model.onnx');
}

/** RGB pixels → planar `[3, H, W]` in [0, 1], written at `offset` of `target`. */
function writeUnit(image: RgbImage, target: Float32Array, offset: number): void {
  const plane = image.width * image.height;
  const stride = image.channels;
  for (let channel = 0; channel < 3; channel += 1) {
    for (let pixel = 0; pixel < plane; pixel += 1) target[offset + channel * plane + pixel] = image.data[pixel * stride + channel]! / 255;
  }
}

/**
 * Makes the ControlNet wrapper. Pass it to `createStreamDiffusion({ model, wrappers: [controlnet] })`
 * with a model folder whose UNet has the residual inputs (the export tool's `--controlnet-inputs`).
 */
export function createControlNet(options: ControlNetOptions = {}): ControlNetWrapper {
  const initial = parseArgument(controlNetsField([]), options.controlnets ?? [], 'controlnets');
  const custom = options.preprocessors ?? {};
  for (const name of Object.keys(custom)) {
    if (Object.hasOwn(PREPROCESSORS, name)) throw new InvalidArgumentError({ field: `preprocessors.${name}`, value: name, expected: `a name no built-in preprocessor has (${PREPROCESSOR_NAMES.join(', ')})` });
  }
  let pipeline: WrapperPipelineV1 | undefined;
  let units: Unit[] = [];
  /** Tensors handed to the last UNet run; released at the next run or on dispose. */
  let outstanding: RuntimeTensor[] = [];
  /** The element type of each residual input of the UNet (read once, at attach). */
  let residualTypes = new Map<string, string>();
  /** All-zero residuals per batch size, for runs with no ControlNet active. */
  const zeros = new Map<number, Promise<Record<string, RuntimeTensor>>>();
  /**
   * Per frame, from `prepareFrame` (or its first UNet run) to `releaseFrame`: its source images (made
   * once for all units), each unit's preprocessed images and conditioning input, and each unit's
   * `controlnet_cond` per batch size, held in the worker for all the frame's UNet runs. Units are
   * keys: an update makes new unit objects, so a frame prepared before it is preprocessed again
   * with the new settings in its turn.
   */
  interface ControlFrame {
    sources: RgbImage[] | undefined;
    processed: Map<Unit, Promise<RgbImage[]>>;
    images: Map<Unit, Promise<Float32Array>>;
    held: Map<Unit, Map<number, Promise<RuntimeTensor>>>;
  }
  const frames = new Map<WrapperFrameV1, ControlFrame>();
  /** Preprocessing under way, which a commit lets finish before it releases the preprocessors it drops. */
  const preprocessing = new Set<Promise<unknown>>();
  /** Units an update dropped, being released (awaited by `dispose`). */
  const releasing = new Set<Promise<unknown>>();

  const frameState = (frame: WrapperFrameV1): ControlFrame => {
    let state = frames.get(frame);
    if (state === undefined) {
      state = { sources: undefined, processed: new Map(), images: new Map(), held: new Map() };
      frames.set(frame, state);
    }
    return state;
  };

  /** Forgets a frame and releases what it held in the worker. */
  const dropFrame = async (frame: WrapperFrameV1): Promise<void> => {
    const dropped = frames.get(frame);
    frames.delete(frame);
    if (dropped === undefined) return;
    const held = await Promise.allSettled([...dropped.held.values()].flatMap((byBatch) => [...byBatch.values()]));
    await Promise.all(held.flatMap((result) => (result.status === 'fulfilled' ? [result.value.dispose()] : [])));
  };

  /** Unit `unit`'s `controlnet_cond` for a run of `batch` entries (entry i diffuses frame i mod f), sent once per frame. */
  const conditioning = (unit: Unit, frame: WrapperFrameV1, batch: number): Promise<RuntimeTensor> => {
    const current = frameState(frame);
    let byBatch = current.held.get(unit);
    if (byBatch === undefined) {
      byBatch = new Map<number, Promise<RuntimeTensor>>();
      current.held.set(unit, byBatch);
    }
    let held = byBatch.get(batch);
    if (held === undefined) {
      held = (async () => {
        const { width, height, frameBufferSize: f } = attached();
        const images = await controlImages(unit, frame);
        const perFrame = unit.channels * width * height;
        const values = new Float32Array(batch * perFrame);
        for (let entry = 0; entry < batch; entry += 1) values.set(images.subarray((entry % f) * perFrame, ((entry % f) + 1) * perFrame), entry * perFrame);
        // Held in the ControlNet's own element type (converted in the worker): a held tensor is fed as it is.
        return attached().runtime.hold(hostTensor(values, [batch, unit.channels, height, width]), { as: unit.conditioningType });
      })();
      byBatch.set(batch, held);
    }
    return held;
  };

  const attached = (): WrapperPipelineV1 => {
    if (pipeline === undefined) throw new InvalidArgumentError({ field: 'controlnet', value: 'not attached', expected: 'a wrapper passed to createStreamDiffusion' });
    return pipeline;
  };

  const load = async (entry: ControlNetEntry, field: string): Promise<Unit> => {
    const { runtime } = attached();
    const definition = preprocessorNamed(entry.preprocessor, custom);
    const parameters = parsePreprocessorParameters(definition, entry.preprocessor_params, { field: `${field}.preprocessor_params` }) as object;
    if (definition.needsModel && entry.preprocessor_model === undefined) {
      throw new InvalidArgumentError({ field: `${field}.preprocessor_model`, value: undefined, expected: `a model folder or .onnx file for the ${definition.name} preprocessor` });
    }
    const path = modelPath(entry.model_id);
    const sessions = await runtime.loadSessions({ controlnet: path });
    try {
      const signature = sessions.signatures.controlnet;
      const names = signature.inputs.map((input) => input.name);
      const missing = CONTROLNET_INPUTS.filter((name) => !names.includes(name));
      const outputs = new Set(signature.outputs.map((output) => output.name));
      const missingOutputs = RESIDUAL_INPUTS.filter((name) => !outputs.has(name));
      if (missing.length > 0 || missingOutputs.length > 0) {
        throw new ModelFolderError({
          problem: 'bad-signature',
          path,
          message: `not a ControlNet made by the export tool: ${missing.length > 0 ? `it lacks the inputs ${missing.join(', ')}` : `it lacks the outputs ${missingOutputs.join(', ')}`} (inputs: ${names.join(', ')})`,
        });
      }
      const cond = signature.inputs.find((input) => input.name === 'controlnet_cond')!;
      const channels = cond.shape[1];
      if (channels !== 3 && channels !== 6) {
        throw new ModelFolderError({ problem: 'bad-signature', path, message: `controlnet_cond has ${String(channels)} channels; expected 3 or 6` });
      }
      if (cond.type !== 'float32' && cond.type !== 'float16') {
        throw new ModelFolderError({ problem: 'bad-signature', path, message: `controlnet_cond is ${cond.type}; expected float32 or float16` });
      }
      const preprocessor = (await definition.create({ runtime, ...(entry.preprocessor_model === undefined ? {} : { modelPath: entry.preprocessor_model }) })) as PreprocessorInstance<object>;
      return { entry, sessions, channels, conditioningType: cond.type, definition, preprocessor, parameters };
    } catch (error) {
      await sessions.dispose();
      throw error;
    }
  };

  const release = async (unit: Unit): Promise<void> => {
    await Promise.allSettled([unit.preprocessor.dispose(), unit.sessions.dispose()]);
  };

  /** The frame's source images (the control image, else the input), RGB, one per frame of the buffer. */
  const sourcesOf = (frame: WrapperFrameV1): RgbImage[] => {
    const current = frameState(frame);
    if (current.sources === undefined) {
      const { width, height, frameBufferSize: f } = attached();
      const source = frame.images.get('control') ?? frame.input;
      if (source === undefined) {
        throw new InvalidArgumentError({ field: 'images.control', value: undefined, expected: 'a control image (txt2img has no input frame to fall back to)' });
      }
      const size = 3 * width * height;
      current.sources = Array.from({ length: f }, (_, index) => tensorToImage(source.subarray(index * size, (index + 1) * size), [1, 3, height, width]));
    }
    return current.sources;
  };

  /**
   * Unit `unit`'s control images for the frame (its preprocessor's output, one per frame of the
   * buffer). Made in `prepareFrame` when the preprocessor does not use the previous output, so it
   * overlaps the diffusion of the frame before; else in the frame's turn.
   */
  const processed = (unit: Unit, frame: WrapperFrameV1): Promise<RgbImage[]> => {
    const current = frameState(frame);
    let made = current.processed.get(unit);
    if (made === undefined) {
      made = (async () => {
        const { width, height } = attached();
        const sources = sourcesOf(frame);
        const previous = unit.definition.usesPreviousOutput ? frame.previousOutput() : undefined;
        const images: RgbImage[] = [];
        for (const [index, image] of sources.entries()) images.push(await unit.preprocessor.process(image, unit.parameters, { width, height, previousOutput: previous?.[index] }));
        return images;
      })();
      const tracked: Promise<unknown> = made.catch(() => undefined).finally(() => preprocessing.delete(tracked));
      preprocessing.add(tracked);
      current.processed.set(unit, made);
    }
    return made;
  };

  /** Unit `unit`'s control input for the frame, `[f, C, H, W]` in [0, 1]. */
  const controlImages = (unit: Unit, frame: WrapperFrameV1): Promise<Float32Array> => {
    const current = frameState(frame);
    let images = current.images.get(unit);
    if (images === undefined) {
      images = (async () => {
        const { width, height, frameBufferSize: f } = attached();
        const made = await processed(unit, frame);
        const plane = width * height;
        const result = new Float32Array(f * unit.channels * plane);
        const sources = sourcesOf(frame);
        const previous = unit.channels === 6 ? frame.previousOutput() : undefined;
        for (const [index, image] of made.entries()) {
          const base = index * unit.channels * plane;
          if (unit.channels === 6) {
            // TemporalNet's layout: the previous output (the input frame before there is one), then the control image.
            writeUnit(previous?.[index] ?? sources[index]!, result, base);
            writeUnit(image, result, base + 3 * plane);
          } else {
            writeUnit(image, result, base);
          }
        }
        return result;
      })();
      current.images.set(unit, images);
    }
    return images;
  };

  /** Per batch entry: conditioning_scale, or 0 outside control_guidance_start…end. */
  const weightsFor = (unit: Unit, call: WrapperUnetCallV1): number[] =>
    call.steps.map((step) => {
      const { control_guidance_start: start, control_guidance_end: end, conditioning_scale: scale } = unit.entry;
      const inside = step / call.stepCount >= start && (step + 1) / call.stepCount <= end + 1e-9;
      return inside ? scale : 0;
    });

  const zeroResiduals = (batch: number): Promise<Record<string, RuntimeTensor>> => {
    let made = zeros.get(batch);
    if (made === undefined) {
      made = (async () => {
        const { model, runtime, latentShape } = attached();
        const [, latentHeight, latentWidth] = latentShape;
        const inputs = model.sessions.signatures.unet.inputs;
        const held: Record<string, RuntimeTensor> = {};
        for (const [index, name] of RESIDUAL_INPUTS.entries()) {
          const declared = inputs.find((input) => input.name === name)!;
          const channels = declared.shape[1];
          if (typeof channels !== 'number') {
            throw new ModelFolderError({ problem: 'bad-signature', path: model.folder.root, message: `the UNet input ${name} has no fixed channel count` });
          }
          // Down residual i is at 1/2^⌊i/3⌋ of the latent size; the mid one at the deepest level, 1/8.
          const factor = index < 12 ? 2 ** Math.floor(index / 3) : 8;
          const dims = [batch, channels, Math.ceil(latentHeight / factor), Math.ceil(latentWidth / factor)];
          const count = dims.reduce((product, dim) => product * dim, 1);
          const tensor: HostTensor = declared.type === 'float16' ? hostTensor(new Uint16Array(count), dims) : hostTensor(new Float32Array(count), dims);
          held[name] = await runtime.hold(tensor);
        }
        return held;
      })();
      made.catch(() => zeros.delete(batch));
      zeros.set(batch, made);
    }
    return made;
  };

  const releaseOutstanding = async (): Promise<void> => {
    const released = outstanding;
    outstanding = [];
    await Promise.all(released.map((tensor) => tensor.dispose()));
  };

  const wrapper: ControlNetWrapper = {
    specVersion: 1,
    name: 'controlnet',
    parameters: { controlnets: controlNetsField(initial) },
    unetInputs: RESIDUAL_INPUTS,
    extraTokens: 0,
    frameImages: [{ name: 'control', description: 'the image the ControlNets preprocess (default: the input frame)', fallback: 'input' }],
    models: () => units.map((unit, index) => ({ name: `controlnet-${index}`, path: modelPath(unit.entry.model_id) })),
    loaded: () => units.map((unit) => ({ modelId: unit.entry.model_id, channels: unit.channels, preprocessor: unit.entry.preprocessor })),

    async attach(given) {
      pipeline = given;
      residualTypes = new Map(given.model.sessions.signatures.unet.inputs.filter((input) => RESIDUAL_INPUTS.includes(input.name)).map((input) => [input.name, input.type]));
      const made: Unit[] = [];
      try {
        for (const [index, entry] of initial.entries()) made.push(await load(entry, `controlnets.${index}`));
      } catch (error) {
        await Promise.all(made.map(release));
        throw error;
      }
      units = made;
    },

    getState: () => ({ controlnets: units.map((unit) => ({ ...unit.entry, preprocessor_params: { ...unit.entry.preprocessor_params } })) }),

    async prepareUpdate(changes): Promise<PreparedWrapperUpdateV1> {
      const wanted = changes.controlnets;
      if (wanted === undefined) return { applied: [], needsReload: [], commit: () => undefined, abandon: async () => undefined };
      const current = new Map(units.map((unit) => [unit.entry.model_id, unit]));
      const fresh: Unit[] = [];
      const next: Unit[] = [];
      try {
        for (const [index, raw] of wanted.entries()) {
          const entry = controlNetEntrySchema.parse(raw);
          const kept = current.get(entry.model_id);
          const sameProcessor = kept !== undefined && kept.entry.preprocessor === entry.preprocessor && kept.entry.preprocessor_model === entry.preprocessor_model;
          if (kept !== undefined && sameProcessor) {
            // Hot: scale, switch, guidance range and preprocessor parameters (validated here).
            const parameters = parsePreprocessorParameters(kept.definition, entry.preprocessor_params, { field: `controlnets.${index}.preprocessor_params` }) as object;
            next.push({ ...kept, entry, parameters });
          } else {
            // A new ControlNet or a new preprocessor: loaded now, beside the running stream.
            const unit = await load(entry, `controlnets.${index}`);
            fresh.push(unit);
            next.push(unit);
          }
        }
      } catch (error) {
        await Promise.all(fresh.map(release));
        throw error;
      }
      const before = JSON.stringify(units.map((unit) => unit.entry));
      const changed = before !== JSON.stringify(next.map((unit) => unit.entry));
      const dropped = units.filter((unit) => !next.some((other) => other.sessions === unit.sessions));
      const replacedPreprocessors = units.filter((unit) => next.some((other) => other.sessions !== unit.sessions && other.entry.model_id === unit.entry.model_id));
      return {
        applied: changed ? ['controlnets'] : [],
        needsReload: [],
        commit: () => {
          units = next;
          // Between two frames: no UNet run uses the dropped ones any more; preprocessing of a
          // frame prepared ahead may, so they are released once that has finished.
          const unused = [...dropped, ...replacedPreprocessors];
          const released: Promise<unknown> = Promise.allSettled([...preprocessing])
            .then(() => Promise.all(unused.map(release)))
            .finally(() => releasing.delete(released));
          releasing.add(released);
        },
        abandon: async () => {
          await Promise.all(fresh.map(release));
        },
      };
    },

    async prepareFrame(frame) {
      // Only preprocessing that does not wait for the frame before (feedback does; it runs in the turn).
      const ahead = units.filter((unit) => unit.entry.enabled && unit.entry.conditioning_scale > 0 && !unit.definition.usesPreviousOutput);
      await Promise.all(ahead.map((unit) => processed(unit, frame)));
    },

    async releaseFrame(frame) {
      await dropFrame(frame);
    },

    async unetCall(call) {
      await releaseOutstanding();
      const { model } = attached();
      const active = units
        .filter((unit) => unit.entry.enabled && unit.entry.conditioning_scale > 0)
        .map((unit) => ({ unit, weights: weightsFor(unit, call) }))
        .filter(({ weights }) => weights.some((weight) => weight !== 0));
      if (active.length === 0) return { inputs: await zeroResiduals(call.batch) };

      const [channels, latentHeight, latentWidth] = attached().latentShape;
      const textWidth = model.capabilities.textEmbeddingWidth;
      const runs: Record<string, RuntimeTensor>[] = [];
      try {
        for (const { unit } of active) {
          const cond = await conditioning(unit, call.frame, call.batch);
          runs.push(
            await unit.sessions.run('controlnet', {
              sample: hostTensor(call.latents, [call.batch, channels, latentHeight, latentWidth]),
              timestep: hostTensor(call.timesteps, [call.batch]),
              encoder_hidden_states: hostTensor(call.textEmbeddings, [call.batch, 77, textWidth]),
              controlnet_cond: cond,
            }),
          );
        }
        // One ControlNet at full weight whose outputs have the UNet's element types: fed as they are.
        const single = runs.length === 1 ? runs[0]! : undefined;
        if (single !== undefined && active[0]!.weights.every((weight) => weight === 1) && RESIDUAL_INPUTS.every((name) => single[name]!.type === residualTypes.get(name))) {
          runs.length = 0;
          outstanding.push(...Object.values(single));
          return { inputs: Object.fromEntries(RESIDUAL_INPUTS.map((name) => [name, single[name]!])) };
        }
        // Else all 13 residuals scaled and summed in one session run.
        const sums = await model.runtime.combineEach(RESIDUAL_INPUTS.map((name) => active.map(({ weights }, index) => ({ tensor: runs[index]![name]!, weight: weights }))));
        outstanding.push(...sums);
        return { inputs: Object.fromEntries(RESIDUAL_INPUTS.map((name, index) => [name, sums[index]!])) };
      } finally {
        await Promise.all(runs.flatMap((run) => Object.values(run).map((tensor) => tensor.dispose())));
      }
    },

    async dispose() {
      await releaseOutstanding();
      await Promise.allSettled([...preprocessing, ...releasing]);
      await Promise.all([...frames.keys()].map(dropFrame));
      const held = await Promise.allSettled([...zeros.values()]);
      zeros.clear();
      await Promise.all(held.flatMap((result) => (result.status === 'fulfilled' ? Object.values(result.value).map((tensor) => tensor.dispose()) : [])));
      await Promise.all(units.map(release));
      units = [];
    },
  };
  return wrapper;
}
