/**
 * Style images → image tokens: the CLIP vision encoder (once per image, cached by content), the
 * weighted blend of several images' embeddings, and the adapter's projection to the tokens the UNet
 * takes after the text tokens. Runs in the pipeline's runtime, never on the frame path: tokens are
 * made when the style changes and kept on the host.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createRecentCache, hostTensor, InvalidArgumentError, ModelFolderError, type RgbImage, type Runtime, type SessionSet } from '@streamdiffusion/core';
import type { AdapterFiles } from './adapter-folder.js';
import { clipPixelValues, readClipPreprocessing, type ClipPreprocessing, type StyleImageSource } from './clip-image.js';

/** Embeddings kept per image (a live show switches between a handful of styles). */
const CACHE_SIZE = 32;

/** The encoder and projection of one adapter, loaded. */
export interface ImageEmbedder {
  /** Image tokens per image, N. */
  readonly tokens: number;
  /** Token width, D (the text embeddings' width). */
  readonly width: number;
  /**
   * The conditional image tokens `[N, D]` for weighted style images (weights summing to 1): each
   * image's embedding (cached), blended, projected.
   */
  tokensFor(images: readonly { readonly image: StyleImageSource; readonly weight: number }[], field: string): Promise<Float32Array>;
  /** The unconditional tokens `[N, D]` (CFG's negative side), as diffusers makes them. */
  readonly unconditional: Float32Array;
  /** How many encoder runs have been made (cache misses), for tests and stats. */
  encoderRuns(): number;
  dispose(): Promise<void>;
}

const ENCODER_INPUT = 'pixel_values';
const PROJECTION_INPUT = 'image_embeds';

/** A cache key for an image: a file by path, size and time; other sources by content. */
async function keyOf(image: StyleImageSource, field: string): Promise<string> {
  if (typeof image === 'string') {
    if (image.startsWith('data:')) return `data:${createHash('sha256').update(image).digest('hex')}`;
    const path = resolve(image);
    const found = await stat(path).catch(() => undefined);
    if (found?.isFile() !== true) throw new InvalidArgumentError({ field, value: image, expected: `an image file (${path} is not one)` });
    return `file:${path}:${found.size}:${found.mtimeMs}`;
  }
  const hash = createHash('sha256');
  if (image instanceof Uint8Array) return `bytes:${hash.update(image).digest('hex')}`;
  const pixels: RgbImage = image;
  return `pixels:${pixels.width}x${pixels.height}x${pixels.channels}:${hash.update(pixels.data).digest('hex')}`;
}

/**
 * Loads an adapter's encoder and projection into `runtime` and checks them against each other.
 * @throws {ModelFolderError} when a model lacks the inputs or outputs the export tool writes, or they do not fit together.
 */
export async function createImageEmbedder(runtime: Runtime, files: AdapterFiles): Promise<ImageEmbedder> {
  const preprocessing: ClipPreprocessing = await readClipPreprocessing(files.preprocessor);
  const sessions: SessionSet<'encoder' | 'projection'> = await runtime.loadSessions({ encoder: files.encoder, projection: files.projection });
  try {
    const config = files.projectionConfig;
    const encoder = sessions.signatures.encoder;
    const projection = sessions.signatures.projection;
    const pixelInput = encoder.inputs.find((input) => input.name === ENCODER_INPUT);
    const embedOutput = encoder.outputs.find((output) => output.name === config.input);
    if (pixelInput === undefined || embedOutput === undefined) {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.encoder, message: `not a CLIP image encoder made by the export tool: it needs the input ${ENCODER_INPUT} and the output ${config.input} (has ${encoder.inputs.map((input) => input.name).join(', ')} → ${encoder.outputs.map((output) => output.name).join(', ')})` });
    }
    const [, , height, width] = pixelInput.shape;
    if ((typeof height === 'number' && height !== preprocessing.crop[0]) || (typeof width === 'number' && width !== preprocessing.crop[1])) {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.preprocessor, message: `crops to ${preprocessing.crop.join('×')}, but the encoder takes ${String(height)}×${String(width)}` });
    }
    const projectionInput = projection.inputs.find((input) => input.name === PROJECTION_INPUT);
    const tokenOutput = projection.outputs[0];
    if (projectionInput === undefined || tokenOutput === undefined) {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.projection, message: `not an IP-Adapter projection made by the export tool: it needs the input ${PROJECTION_INPUT}` });
    }
    const embedShape = embedOutput.shape.slice(1);
    const projectionShape = projectionInput.shape.slice(1);
    if (embedShape.length !== projectionShape.length || embedShape.some((dim, index) => typeof dim === 'number' && typeof projectionShape[index] === 'number' && dim !== projectionShape[index])) {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.projection, message: `takes ${PROJECTION_INPUT} [batch, ${projectionShape.join(', ')}], but the encoder's ${config.input} is [batch, ${embedShape.join(', ')}]: this encoder is not the one the adapter was made for` });
    }

    /** Each image's embedding, and each blend's tokens (a scale change re-uses them: no model runs). */
    const embeddings = createRecentCache<Float32Array>(CACHE_SIZE);
    const blends = createRecentCache<Float32Array>(CACHE_SIZE);
    let runs = 0;
    const encode = async (pixels: Float32Array): Promise<Float32Array> => {
      runs += 1;
      const out = await sessions.run('encoder', { [ENCODER_INPUT]: hostTensor(pixels, [1, 3, preprocessing.crop[0], preprocessing.crop[1]]) }, { read: [config.input] });
      try {
        return await out[config.input]!.float32();
      } finally {
        await Promise.all(Object.values(out).map((tensor) => tensor.dispose()));
      }
    };
    const project = async (embedding: Float32Array, dims: readonly number[]): Promise<Float32Array> => {
      const out = await sessions.run('projection', { [PROJECTION_INPUT]: hostTensor(embedding, [1, ...dims]) }, { read: [tokenOutput.name] });
      try {
        return await out[tokenOutput.name]!.float32();
      } finally {
        await Promise.all(Object.values(out).map((tensor) => tensor.dispose()));
      }
    };

    // What the encoder gives one image, as the projection takes it: [P] or [T, H].
    const zeroPixels = new Float32Array(3 * preprocessing.crop[0] * preprocessing.crop[1]);
    const probe = await encode(zeroPixels);
    runs = 0;
    const dims = config.input === 'image_embeds' ? [probe.length] : [embedShape[0] as number, probe.length / (embedShape[0] as number)];
    if (config.input === 'penultimate_hidden_states' && typeof embedShape[0] !== 'number') {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.encoder, message: 'penultimate_hidden_states needs a fixed token count' });
    }
    // diffusers' negative image embedding: zeros for a regular adapter, the encoder's output for an all-zero pixel input for plus.
    const unconditional = await project(config.input === 'image_embeds' ? new Float32Array(probe.length) : probe, dims);
    if (unconditional.length !== config.image_tokens * config.cross_attention_dim) {
      throw new ModelFolderError({ problem: 'bad-signature', path: files.projection, message: `gives ${unconditional.length} values; its config says ${config.image_tokens} tokens × ${config.cross_attention_dim}` });
    }

    return {
      tokens: config.image_tokens,
      width: config.cross_attention_dim,
      unconditional,
      encoderRuns: () => runs,
      async tokensFor(images, field) {
        const keys = await Promise.all(images.map((item, index) => keyOf(item.image, images.length === 1 ? field : `${field}.${index}.image`)));
        const blendKey = keys.map((key, index) => `${key}*${images[index]!.weight}`).join('|');
        return blends.get(blendKey, async () => {
          const made = await Promise.all(
            images.map((item, index) => embeddings.get(keys[index]!, async () => encode(await clipPixelValues(item.image, preprocessing, images.length === 1 ? field : `${field}.${index}.image`)))),
          );
          const blended = new Float32Array(probe.length);
          made.forEach((embedding, index) => {
            const weight = images[index]!.weight;
            for (let value = 0; value < blended.length; value += 1) blended[value] = blended[value]! + weight * embedding[value]!;
          });
          return project(blended, dims);
        });
      },
      dispose: () => sessions.dispose(),
    };
  } catch (error) {
    await sessions.dispose();
    throw error;
  }
}
