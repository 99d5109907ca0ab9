/**
 * UNetWrapperV1: the contract between the pipeline and a feature that changes the UNet call
 * (ControlNet, IP-Adapter, …). Types only: a wrapper is any object of this shape, so feature
 * packages depend on this spec, never on the pipeline's internals. The version is in the name and in
 * `specVersion`; a v2 will sit beside this file and the pipeline will accept both.
 *
 * Life of a wrapper in `createStreamDiffusion({ model, wrappers: [a, b] })`:
 * 1. checked before anything loads: its parameter keys clash with no other, the model's UNet has
 *    every input it feeds, and the UNet's token count is 77 + every wrapper's `extraTokens`;
 * 2. `attach(pipeline)` once, in order: load its models;
 * 3. per frame: `prepareFrame(frame)` (optional) as soon as the frame is given, while the frame
 *    before it may still be running; then `unetCall(call)` before every UNet run, in order (inputs
 *    are merged, extra tokens are appended after the 77 text tokens in wrapper order); then
 *    `releaseFrame(frame)` (optional) once the frame is over, however it ended;
 * 4. `prepareUpdate(changes)` when `update()` names its keys, then `commit()` in the same instant
 *    as the pipeline's own changes (between two frames), or `abandon()` when any part failed;
 * 5. `dispose()` when the pipeline is disposed, in reverse order.
 */
import type { z } from 'zod';
import type { RgbImage } from '../image/image.js';
import type { LoadedModel } from '../model-folder/load-model.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import type { Runtime, RuntimeTensor } from '../runtime/runtime.js';

/**
 * A wrapper's parameter fields: top-level keys of the composed parameter schema (and of config
 * files). Each field carries a `description` and `.meta({ update: 'hot' | 'reload' | 'rebuild' })`,
 * as the pipeline's own fields do (see `ParameterMeta`); defaults are the wrapper's initial state.
 */
export type WrapperParameterShape<Parameters extends object> = { readonly [Key in keyof Parameters]-?: z.ZodType<Parameters[Key], unknown> };

/** An image a wrapper takes with every frame (a ControlNet's control image). */
export interface WrapperFrameImageV1 {
  /** The key in `img2img(frames, { images: { [name]: … } })`. */
  readonly name: string;
  readonly description: string;
  /** When the caller gives none: use the input frame (`input`), or refuse the frame (`required`). */
  readonly fallback: 'input' | 'required';
}

/** The pipeline a wrapper is attached to. */
export interface WrapperPipelineV1 {
  readonly model: LoadedModel;
  /** The runtime the model's sessions live in; load the wrapper's own models here. */
  readonly runtime: Runtime;
  readonly width: number;
  readonly height: number;
  /** f: frames per call. */
  readonly frameBufferSize: number;
  /** Latent size `[channels, height, width]` of one frame. */
  readonly latentShape: readonly [number, number, number];
}

/** One frame's images, `[f, 3, height, width]` in [-1, 1] at the pipeline's resolution. */
export interface WrapperFrameV1 {
  /** The input frames (img2img); undefined for txt2img. */
  readonly input: Float32Array | undefined;
  /** Each `frameImages` entry by name, after its fallback. */
  readonly images: ReadonlyMap<string, Float32Array>;
  /**
   * The pipeline's previous output, one RGB image per frame at the pipeline's size (made on first
   * ask), or undefined before the first output. For feedback: blending the last output back in.
   * Known once the frame's turn has come (in `unetCall`); in `prepareFrame` the frame before may
   * still be running, and asking throws.
   */
  previousOutput(): readonly RgbImage[] | undefined;
}

/** What a wrapper sees of one UNet run. */
export interface WrapperUnetCallV1 {
  /** Latents `[batch, C, h, w]` as the UNet gets them. */
  readonly latents: Float32Array;
  readonly batch: number;
  /** One timestep per batch entry. */
  readonly timesteps: Float32Array;
  /** Per batch entry: its position in t_index_list (for per-step weights). */
  readonly steps: readonly number[];
  /** n = the length of t_index_list: `steps[i] / stepCount` is how far entry i is through denoising. */
  readonly stepCount: number;
  /** Per batch entry: true when it is conditioned on the negative prompt (CFG). */
  readonly unconditional: readonly boolean[];
  /** The text-token embeddings `[batch, 77, D]`, without any wrapper's extra tokens. */
  readonly textEmbeddings: Float32Array;
  /** The frame this run belongs to. */
  readonly frame: WrapperFrameV1;
}

/** What a wrapper adds to one UNet run. */
export interface WrapperContributionV1 {
  /** Exactly the wrapper's `unetInputs`, by name. */
  readonly inputs: Readonly<Record<string, HostTensor | RuntimeTensor>>;
  /**
   * `[batch, extraTokens, D]` when `extraTokens` > 0. Never changed after it is returned: return the
   * same array again for the same tokens (the pipeline then re-uses the hidden states it merged from
   * it instead of copying them every run), a new one for new tokens.
   */
  readonly tokens?: Float32Array;
}

/** An update a wrapper has prepared (validated, models loaded) but not yet made visible. */
export interface PreparedWrapperUpdateV1 {
  /** Keys whose new value will be in force after `commit` (hot keys that changed). */
  readonly applied: readonly string[];
  /** Keys whose new value needs a new pipeline; they are not applied. */
  readonly needsReload: readonly string[];
  /** Makes the update visible to the next frame. Synchronous, so it cannot land mid-frame; must not throw. */
  commit(): void;
  /** Another part of the same update failed: release whatever `prepareUpdate` loaded. */
  abandon(): Promise<void>;
}

/** A model a wrapper loads, for engine planning and for users' inventories. */
export interface WrapperModelV1 {
  /** What the model is for, unique within the wrapper (`controlnet-0`). */
  readonly name: string;
  /** The `.onnx` file. */
  readonly path: string;
}

/** A feature that changes the UNet call. Implement it as a plain object; see the file comment for its life. */
export interface UNetWrapperV1<Parameters extends object = Record<string, unknown>> {
  readonly specVersion: 1;
  /** Short name for errors and logs (`controlnet`). */
  readonly name: string;
  /** The parameters it owns, as top-level keys beside the pipeline's. */
  readonly parameters: WrapperParameterShape<Parameters>;
  /** UNet inputs it feeds on every run; the model must have each one. */
  readonly unetInputs: readonly string[];
  /** Prompt-embedding tokens it appends after the text tokens (0 for none). */
  readonly extraTokens: number;
  /** Images it takes with every frame. */
  readonly frameImages: readonly WrapperFrameImageV1[];
  /** The models it has loaded (after `attach`) or will load. */
  models(): readonly WrapperModelV1[];
  /** Binds to the pipeline and loads the wrapper's models; called once, before the first frame. */
  attach(pipeline: WrapperPipelineV1): Promise<void>;
  /** Its parameters in force; `prepareUpdate(getState())` changes nothing. */
  getState(): Parameters;
  /** Validated changes (only its own keys, already checked against `parameters`). */
  prepareUpdate(changes: Partial<Parameters>): Promise<PreparedWrapperUpdateV1>;
  /**
   * Optional: work a frame needs before its UNet runs that does not depend on the frame before it
   * (a ControlNet's preprocessing). Called as soon as the frame is given, while the previous frame
   * may still be diffusing, so the two overlap; the frame's turn waits for it, and an error fails
   * that frame only. The same `frame` object then comes back in `unetCall` and `releaseFrame`.
   */
  prepareFrame?(frame: WrapperFrameV1): Promise<void>;
  /** Called before every UNet run. */
  unetCall(call: WrapperUnetCallV1): Promise<WrapperContributionV1>;
  /** Optional: the frame is over (processed, skipped by the similarity filter, failed); release what was kept for it. Must not throw. */
  releaseFrame?(frame: WrapperFrameV1): Promise<void>;
  /** Releases its models and tensors. */
  dispose(): Promise<void>;
}

/** Any v1 wrapper, whatever its parameters. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parameter types vary by wrapper; the pipeline treats them as opaque records
export type AnyUNetWrapperV1 = UNetWrapperV1<any>;

/** The parameters of a wrapper. */
export type WrapperParametersOf<Wrapper> = Wrapper extends UNetWrapperV1<infer Parameters> ? Parameters : never;

type Intersection<Union> = (Union extends unknown ? (value: Union) => void : never) extends (value: infer Both) => void ? Both : never;

/** The parameters of a list of wrappers, all together (`{}` for none). */
export type WrappersParameters<Wrappers extends readonly AnyUNetWrapperV1[]> = [Wrappers[number]] extends [never]
  ? object
  : Intersection<WrapperParametersOf<Wrappers[number]>> & object;

/**
 * What a wrapper's parameters accept as input (`update`, config files): each field's zod input type,
 * where defaults may be left out (a ControlNet entry with only its `model_id`). A wrapper whose
 * `parameters` are typed only as `WrapperParameterShape` has unknown inputs; its output types stand in.
 */
export type WrapperParametersInputOf<Wrapper> = Wrapper extends { readonly parameters: infer Shape }
  ? { [Key in keyof Shape]: Shape[Key] extends z.ZodType ? (unknown extends z.input<Shape[Key]> ? z.output<Shape[Key]> : z.input<Shape[Key]>) : never }
  : never;

/** The input parameters of a list of wrappers, all together (`{}` for none). */
export type WrappersParametersInput<Wrappers extends readonly AnyUNetWrapperV1[]> = [Wrappers[number]] extends [never]
  ? object
  : Intersection<WrapperParametersInputOf<Wrappers[number]>> & object;
