/**
 * A preprocessor turns a frame into a ControlNet's control image (edges, depth, lines…). Each one is
 * a pluggable unit: a name, a zod schema of its parameters (all hot: they change between two frames
 * without reloading anything), and a `create` that loads what it needs (ONNX models run in the
 * pipeline's runtime) and gives an instance that processes frames.
 */
import type { RgbImage, Runtime } from '@streamdiffusion/core';
import type { z } from 'zod';

/** What an instance sees besides the frame it processes. */
export interface PreprocessContext {
  /** The pipeline's resolution: every control image is made at this size. */
  readonly width: number;
  readonly height: number;
  /**
   * The pipeline's previous output frame at the pipeline's size (the same frame index within the
   * frame buffer), or undefined before the first output. Only preprocessors with
   * `usesPreviousOutput` get it; their frames are processed after the previous diffusion ended.
   */
  readonly previousOutput: RgbImage | undefined;
}

/** Where an instance loads what it needs. */
export interface PreprocessorSetup {
  /** The pipeline's runtime: ONNX preprocessors load their sessions here. */
  readonly runtime: Runtime;
  /** A model folder or `.onnx` file, for preprocessors that run a model (depth, lineart). */
  readonly modelPath?: string;
}

/** A loaded preprocessor. */
export interface PreprocessorInstance<Parameters extends object> {
  /**
   * One frame (any size, RGB or RGBA) → its control image, RGB at `context.width` × `context.height`.
   * Must not keep `frame` after it resolves.
   */
  process(frame: RgbImage, parameters: Parameters, context: PreprocessContext): Promise<RgbImage>;
  /** Releases what `create` loaded. */
  dispose(): Promise<void>;
}

/** A kind of preprocessor, registered by name. */
export interface PreprocessorDefinition<Parameters extends object = Record<string, unknown>> {
  /** The name config files use (`canny`, `depth`, …). */
  readonly name: string;
  readonly description: string;
  /** Its parameters (`preprocessor_params` in config files), with defaults; every field is hot. */
  readonly parameters: z.ZodType<Parameters, object>;
  /** True when it blends in the previous output (feedback): frames then cannot be preprocessed ahead. */
  readonly usesPreviousOutput: boolean;
  /** True when it runs a model and needs `modelPath`. */
  readonly needsModel: boolean;
  create(setup: PreprocessorSetup): Promise<PreprocessorInstance<Parameters>>;
}

/** Any preprocessor definition, whatever its parameters. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parameter types vary by preprocessor; callers validate with its schema
export type AnyPreprocessorDefinition = PreprocessorDefinition<any>;
