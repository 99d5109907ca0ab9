/**
 * Runs our pipeline on the cases of fixtures/goldens/stream-diffusion.json.gz (recorded from the
 * Python original by tools/export `stream-goldens`) and measures the difference per case. Used by
 * the conformance test and by `scripts/compare-stream-goldens.ts`.
 */
import type { LoadedModel } from '../src/model-folder/load-model.js';
import type { CfgType } from '../src/pipeline/stream-batch.js';
import { createStreamDiffusion } from '../src/pipeline/stream-diffusion.js';
import { decodeGolden, readGoldenJson } from './goldens.js';

type EncodedTensor = { dtype: string; dims: number[]; data: string };

/** The goldens file. */
export interface StreamGoldens {
  /** How the file was made, and from which commit of the original. */
  readonly command: string;
  readonly streamdiffusion_commit: string;
  readonly prompt: string;
  readonly negative_prompt: string;
  readonly width: number;
  readonly height: number;
  readonly frames: number;
  readonly cases: Record<
    string,
    {
      readonly settings: {
        t_index_list: number[];
        cfg_type: CfgType;
        frame_buffer_size: number;
        guidance_scale: number;
        seed: number;
        delta?: number;
        do_add_noise?: boolean;
        use_denoising_batch?: boolean;
        /** img2img (default), txt2img (stream batch from noise) or txt2img-one-step (SD-Turbo). */
        mode?: 'img2img' | 'txt2img' | 'txt2img-one-step';
      };
      readonly reference: string;
      readonly latents: EncodedTensor;
      readonly last_image?: EncodedTensor;
    }
  >;
}

/**
 * How close our pipeline must be to the Python original (CI and the GPU host runs alike): every x̂0
 * of every call within `relative · max(1, max|Python x̂0|)`, the stored decoded image within `image`.
 */
export const STREAM_TOLERANCE = Object.freeze({ relative: 1e-4, image: 1e-4 });

/** Whether a comparison is within {@link STREAM_TOLERANCE} (NaN never is). */
export function withinStreamTolerance(comparison: StreamComparison): boolean {
  return (
    comparison.maxAbsDiff <= STREAM_TOLERANCE.relative * Math.max(1, comparison.maxAbsReference) &&
    (comparison.imageMaxAbsDiff === null || comparison.imageMaxAbsDiff <= STREAM_TOLERANCE.image)
  );
}

/** One case compared: max |ours − Python| over every x̂0 of every call, and the largest |Python|. */
export interface StreamComparison {
  readonly name: string;
  readonly reference: string;
  readonly maxAbsDiff: number;
  readonly maxAbsReference: number;
  /** Max difference of the last decoded image, when the case stores it. */
  readonly imageMaxAbsDiff: number | null;
}

export async function readStreamGoldens(): Promise<StreamGoldens> {
  return (await readGoldenJson('stream-diffusion.json.gz')) as StreamGoldens;
}

/** Frames k … k+count−1, channel-major, ((7i + 31k) mod 256) / 127.5 − 1 in float32 steps (as numpy). */
export function goldenFrames(first: number, count: number, size: number): Float32Array {
  const values = new Float32Array(count * size);
  for (let frame = 0; frame < count; frame += 1) {
    for (let index = 0; index < size; index += 1) {
      values[frame * size + index] = Math.fround(Math.fround(((7 * index + 31 * (first + frame)) % 256) / 127.5) - 1);
    }
  }
  return values;
}

function maxAbsDiff(actual: Float32Array, expected: Float32Array): number {
  let worst = 0;
  for (let index = 0; index < expected.length; index += 1) worst = Math.max(worst, Math.abs(actual[index]! - expected[index]!));
  return worst;
}

/** Runs one golden case through our pipeline on `model` (the tiny-sd-turbo fixture). */
export async function compareStreamCase(goldens: StreamGoldens, name: string, model: LoadedModel): Promise<StreamComparison> {
  const golden = goldens.cases[name]!;
  const { settings } = golden;
  const f = settings.frame_buffer_size;
  const stream = await createStreamDiffusion({
    model,
    prompt: goldens.prompt,
    negativePrompt: goldens.negative_prompt,
    tIndexList: settings.t_index_list,
    numInferenceSteps: 50,
    width: goldens.width,
    height: goldens.height,
    frameBufferSize: f,
    cfgType: settings.cfg_type,
    guidanceScale: settings.guidance_scale,
    delta: settings.delta ?? 1,
    addNoise: settings.do_add_noise ?? true,
    useDenoisingBatch: settings.use_denoising_batch ?? true,
    seed: settings.seed,
  });
  const expected = decodeGolden(golden.latents).data as Float32Array;
  const perCall = expected.length / goldens.frames;
  const imageSize = 3 * goldens.height * goldens.width;
  let worst = 0;
  let scale = 0;
  let lastImage: Float32Array = new Float32Array(0);
  const mode = settings.mode ?? 'img2img';
  for (let call = 0; call < goldens.frames; call += 1) {
    const result =
      mode === 'img2img'
        ? await stream.img2imgTensor(goldenFrames(call * f, f, imageSize))
        : mode === 'txt2img'
          ? await stream.txt2imgTensor()
          : await stream.txt2imgOneStepTensor();
    const reference = expected.subarray(call * perCall, (call + 1) * perCall);
    worst = Math.max(worst, maxAbsDiff(result.latents, reference));
    for (const value of reference) scale = Math.max(scale, Math.abs(value));
    lastImage = result.images;
  }
  const imageMaxAbsDiff = golden.last_image === undefined ? null : maxAbsDiff(lastImage, decodeGolden(golden.last_image).data as Float32Array);
  return { name: `${name} (${mode})`, reference: golden.reference, maxAbsDiff: worst, maxAbsReference: scale, imageMaxAbsDiff };
}
