/**
 * What the model-based preprocessors (depth, lineart) share: finding the model and its
 * `preprocessor.json`, loading it into the pipeline's runtime, and running one frame through it.
 *
 * A model is a folder holding `model.onnx` and, optionally, `preprocessor.json`, or an `.onnx`
 * file alone (then the preprocessor's defaults apply). `preprocessor.json` (every key optional):
 *
 * ```json
 * { "input_size": 518, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "output_range": [0, 1] }
 * ```
 *
 * - `input_size`: the size frames are stretched to (Lanczos) before the model, a number (square) or
 *   `{ "width": …, "height": … }`; a model that declares fixed input dims is run at those instead;
 * - `mean`, `std`: per RGB channel, the input is `(pixel / 255 − mean) / std`;
 * - `output_range`: the model's output values that map to black and white (lineart only; depth is
 *   normalised per frame from its own minimum and maximum).
 *
 * The model takes one `[1, 3, H, W]` float32 input and gives `[1, 1, h, w]` or `[1, h, w]` first.
 */
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DisposedError,
  InferenceError,
  InvalidArgumentError,
  ModelFolderError,
  hostTensor,
  resizeImage,
  type RgbImage,
  type Runtime,
  type RuntimeTensor,
  type SessionSet,
} from '@streamdiffusion/core';
import { greyToRgb } from './grey-image.js';
import type { PreprocessorDefinition } from './preprocessor.js';
import { z } from 'zod';
import { frameAtSize } from './frame-at-size.js';
import { hotParameter } from './preprocessor-parameters.js';

const positiveSize = z.int().min(1).max(8192);
const triple = z.tuple([z.number(), z.number(), z.number()]);

/** The keys of a model folder's `preprocessor.json`; each left out takes the preprocessor's default. */
export const preprocessorModelConfigSchema = z.strictObject({
  input_size: z
    .union([positiveSize, z.strictObject({ width: positiveSize, height: positiveSize })])
    .optional()
    .describe('Size frames are stretched to before the model: a number (square) or { width, height }.'),
  mean: triple.optional().describe('Per RGB channel, subtracted from pixel / 255.'),
  std: triple
    .refine((values) => values.every((value) => value !== 0), { error: 'no zero' })
    .optional()
    .describe('Per RGB channel, what (pixel / 255 − mean) is divided by.'),
  output_range: z
    .tuple([z.number(), z.number()])
    .refine(([low, high]) => low !== high, { error: 'two different values' })
    .optional()
    .describe('Model output values that become black and white (lineart).'),
});

/** A model folder's `preprocessor.json`, parsed. */
export type PreprocessorModelConfig = z.output<typeof preprocessorModelConfigSchema>;

/** How a model-based preprocessor reads its model, when `preprocessor.json` says nothing. */
export interface OnnxModelDefaults {
  /** Square side frames are stretched to for models without fixed input dims. */
  readonly inputSize: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
  readonly outputRange: readonly [number, number];
}

/** What a model gives for one frame: `width` × `height` values, row by row. */
export interface OnnxModelOutput {
  readonly values: Float32Array;
  readonly width: number;
  readonly height: number;
}

/** A loaded preprocessor model. */
export interface OnnxPreprocessorModel {
  /** The size frames are stretched to before the model. */
  readonly inputSize: { readonly width: number; readonly height: number };
  readonly outputRange: readonly [number, number];
  /** One frame (any size) through the model. */
  run(frame: RgbImage): Promise<OnnxModelOutput>;
  dispose(): Promise<void>;
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (error) {
    throw new ModelFolderError({ problem: 'missing-file', path, message: 'no model folder or .onnx file here', cause: error });
  }
}

async function readModelConfig(path: string): Promise<PreprocessorModelConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: 'preprocessor.json is not JSON', cause: error });
  }
  const result = preprocessorModelConfigSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ModelFolderError({
      problem: 'bad-config',
      path,
      message: `preprocessor.json: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    });
  }
  return result.data;
}

/** The model file and its description, from a folder or an `.onnx` file. */
async function locateModel(modelPath: string): Promise<{ file: string; config: PreprocessorModelConfig }> {
  if (!(await isFolder(modelPath))) {
    if (!modelPath.toLowerCase().endsWith('.onnx')) {
      throw new ModelFolderError({ problem: 'missing-file', path: modelPath, message: 'expected a model folder or an .onnx file' });
    }
    return { file: modelPath, config: {} };
  }
  const file = join(modelPath, 'model.onnx');
  try {
    await stat(file);
  } catch (error) {
    throw new ModelFolderError({ problem: 'missing-file', path: file, message: 'the model folder has no model.onnx', cause: error });
  }
  return { file, config: await readModelConfig(join(modelPath, 'preprocessor.json')) };
}

/**
 * Loads a preprocessor model into the runtime and checks its signature: one `[1, 3, H, W]` float
 * input. Fixed H and W in the model win over `input_size`, and must agree with it when both are given.
 */
export async function loadOnnxPreprocessorModel(options: {
  readonly runtime: Runtime;
  readonly modelPath: string | undefined;
  /** The preprocessor's name, for error messages and the session's name. */
  readonly name: string;
  readonly defaults: OnnxModelDefaults;
}): Promise<OnnxPreprocessorModel> {
  const { runtime, modelPath, name, defaults } = options;
  if (modelPath === undefined || modelPath === '') {
    throw new InvalidArgumentError({
      field: 'modelPath',
      value: modelPath,
      expected: `a model folder (model.onnx, optional preprocessor.json) or an .onnx file for the ${name} preprocessor`,
    });
  }
  const { file, config } = await locateModel(modelPath);
  const sessions: SessionSet = await runtime.loadSessions({ [name]: file });
  try {
    const signature = sessions.signatures[name]!;
    const input = signature.inputs[0];
    const output = signature.outputs[0];
    const [batch, channels, height, width] = input?.shape ?? [];
    if (
      signature.inputs.length !== 1 ||
      input === undefined ||
      output === undefined ||
      (input.type !== 'float32' && input.type !== 'float16') ||
      input.shape.length !== 4 ||
      (typeof batch === 'number' && batch !== 1) ||
      (typeof channels === 'number' && channels !== 3)
    ) {
      throw new ModelFolderError({
        problem: 'bad-signature',
        path: file,
        message: `a ${name} model takes one float [1, 3, H, W] input`,
      });
    }
    const configured =
      typeof config.input_size === 'number' ? { width: config.input_size, height: config.input_size } : config.input_size;
    const fixed = typeof width === 'number' && typeof height === 'number' ? { width, height } : undefined;
    if (fixed !== undefined && configured !== undefined && (fixed.width !== configured.width || fixed.height !== configured.height)) {
      throw new ModelFolderError({
        problem: 'bad-config',
        path: modelPath,
        message:
          `preprocessor.json's input_size ${configured.width}×${configured.height} ` +
          `differs from the model's fixed input ${fixed.width}×${fixed.height}`,
      });
    }
    const inputSize = fixed ?? configured ?? { width: defaults.inputSize, height: defaults.inputSize };
    const mean = config.mean ?? defaults.mean;
    const std = config.std ?? defaults.std;
    const outputRange = config.output_range ?? defaults.outputRange;
    let disposed = false;
    return {
      inputSize,
      outputRange,
      async run(frame) {
        if (disposed) throw new DisposedError(`the ${name} preprocessor`);
        const resized = await frameAtSize(frame, inputSize);
        const tensor = hostTensor(normalisedPlanes(resized, mean, std), [1, 3, inputSize.height, inputSize.width]);
        const outputs = await sessions.run(name, { [input.name]: tensor }, { read: [output.name] });
        try {
          return await outputPlane(outputs[output.name], name);
        } finally {
          await Promise.all(Object.values(outputs).map((tensor) => tensor.dispose()));
        }
      },
      async dispose() {
        disposed = true;
        await sessions.dispose();
      },
    };
  } catch (error) {
    await sessions.dispose();
    throw error;
  }
}

/** The model's first output as one plane of values, checked to be `[1, 1, h, w]` or `[1, h, w]`. */
async function outputPlane(result: RuntimeTensor | undefined, model: string): Promise<OnnxModelOutput> {
  if (result === undefined) throw new InferenceError({ model, message: 'the model gave no output' });
  const { dims } = result;
  const height = dims[dims.length - 2];
  const width = dims[dims.length - 1];
  const leadingOnes = dims.slice(0, -2).every((dim) => dim === 1);
  if ((dims.length !== 3 && dims.length !== 4) || !leadingOnes || height === undefined || width === undefined) {
    throw new InferenceError({ model, message: `expected an output of [1, 1, h, w] or [1, h, w], got [${dims.join(', ')}]` });
  }
  return { values: await result.float32(), width, height };
}

/** Interleaved RGB(A) bytes → planar `(pixel / 255 − mean) / std` per channel. */
function normalisedPlanes(image: RgbImage, mean: readonly number[], std: readonly number[]): Float32Array {
  const plane = image.width * image.height;
  const values = new Float32Array(3 * plane);
  for (let channel = 0; channel < 3; channel += 1) {
    const offset = channel * plane;
    const channelMean = mean[channel]!;
    const channelStd = std[channel]!;
    for (let pixel = 0; pixel < plane; pixel += 1) {
      values[offset + pixel] = (image.data[pixel * image.channels + channel]! / 255 - channelMean) / channelStd;
    }
  }
  return values;
}

/** The parameters of an ONNX grey preprocessor: `invert` (hot), described for its kind of model. */
export function invertParameters(description: string) {
  return z.object({ invert: hotParameter(z.boolean({ error: 'true or false' }).default(false), description) });
}

/**
 * A preprocessor that runs an ONNX image model and shows its output as grey: `toGrey` turns the
 * model's values into 0..255 levels (depth: per-frame range; lineart: the output range), `invert`
 * gives 255 − level, then the grey image is resized to the pipeline's size. Depth and lineart
 * differ only in `toGrey` and their defaults.
 */
export function onnxGreyPreprocessor(spec: {
  readonly name: string;
  readonly description: string;
  readonly parameters: ReturnType<typeof invertParameters>;
  readonly defaults: OnnxModelDefaults;
  readonly toGrey: (values: Float32Array, model: OnnxPreprocessorModel) => Uint8Array;
}): PreprocessorDefinition<{ invert: boolean }> {
  return {
    name: spec.name,
    description: spec.description,
    parameters: spec.parameters,
    usesPreviousOutput: false,
    needsModel: true,
    async create(setup) {
      const model = await loadOnnxPreprocessorModel({ runtime: setup.runtime, modelPath: setup.modelPath, name: spec.name, defaults: spec.defaults });
      return {
        async process(frame, parameters, context) {
          const output = await model.run(frame);
          const grey = spec.toGrey(output.values, model);
          if (parameters.invert) for (let index = 0; index < grey.length; index += 1) grey[index] = 255 - grey[index]!;
          return resizeImage(greyToRgb(grey, output), context);
        },
        async dispose() {
          await model.dispose();
        },
      };
    },
  };
}
