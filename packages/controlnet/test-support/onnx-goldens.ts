/**
 * The ONNX preprocessors' goldens (recorded with Python onnxruntime by
 * scripts/record-onnx-preprocessor-goldens.py) and the helpers their tests share.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RgbImage } from '@streamdiffusion/core';
import { expect } from 'vitest';

/** packages/controlnet/test-fixtures/preprocessors/. */
export const PREPROCESSOR_FIXTURES = fileURLToPath(new URL('../test-fixtures/preprocessors/', import.meta.url));

/** One preprocessor's golden: its input frame, the model's raw output and the grey images expected. */
export interface OnnxGolden {
  readonly width: number;
  readonly height: number;
  readonly frame: string;
  readonly output_dims: number[];
  readonly output: string;
  readonly grey: string;
  readonly grey_inverted: string;
}

/** The golden of `kind`, with its input frame as pixels. */
export async function onnxGolden(kind: 'depth' | 'lineart'): Promise<{ readonly golden: OnnxGolden; readonly frame: RgbImage }> {
  const goldens = JSON.parse(await readFile(join(PREPROCESSOR_FIXTURES, 'onnx-goldens.json'), 'utf8')) as Record<'depth' | 'lineart', OnnxGolden>;
  const golden = goldens[kind];
  return { golden, frame: { data: new Uint8Array(Buffer.from(golden.frame, 'base64')), width: golden.width, height: golden.height, channels: 3 } };
}

/** Base64 → the bytes as numbers. */
export const bytes = (base64: string): number[] => Array.from(Buffer.from(base64, 'base64'));

/** The first channel, after checking the image is grey (three equal channels). */
export function greyChannel(image: RgbImage): number[] {
  const grey: number[] = [];
  for (let pixel = 0; pixel < image.width * image.height; pixel += 1) {
    const [r, g, b] = [image.data[pixel * 3], image.data[pixel * 3 + 1], image.data[pixel * 3 + 2]];
    expect(r === g && g === b, `pixel ${pixel} is grey`).toBe(true);
    grey.push(r!);
  }
  return grey;
}
