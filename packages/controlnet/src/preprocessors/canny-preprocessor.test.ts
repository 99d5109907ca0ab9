import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, readImage, type RgbImage, type Runtime } from '@streamdiffusion/core';
import { describe, expect, it } from 'vitest';
import { cannyEdges } from './canny-edges.js';
import { cannyPreprocessor } from './canny-preprocessor.js';
import { rgbToGrey } from './grey-image.js';
import { parsePreprocessorParameters } from './preprocessor-parameters.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../test-fixtures/preprocessors/canny/${name}`, import.meta.url));

interface CannyGoldens {
  readonly opencv: string;
  readonly cases: readonly {
    readonly image: string;
    readonly width: number;
    readonly height: number;
    readonly grey: string;
    readonly canny: readonly { low_threshold: number; high_threshold: number; edge_pixels: number; edges: string }[];
  }[];
}

const goldens = JSON.parse(await readFile(fixture('goldens.json'), 'utf8')) as CannyGoldens;

/** numpy.packbits' layout: 8 pixels a byte, the first in the highest bit. */
function unpackEdges(base64: string, pixels: number): Uint8Array {
  const packed = Buffer.from(base64, 'base64');
  const edges = new Uint8Array(pixels);
  for (let pixel = 0; pixel < pixels; pixel += 1) edges[pixel] = (packed[pixel >> 3]! >> (7 - (pixel & 7))) & 1 ? 255 : 0;
  return edges;
}

function differingPixels(actual: Uint8Array, expected: Uint8Array): number {
  let count = 0;
  for (let index = 0; index < expected.length; index += 1) if (actual[index] !== expected[index]) count += 1;
  return count;
}

/** The first channel of an RGB image, after checking all three channels are equal. */
function greyChannel(image: RgbImage): Uint8Array {
  const grey = new Uint8Array(image.width * image.height);
  for (let pixel = 0; pixel < grey.length; pixel += 1) {
    const [r, g, b] = [image.data[pixel * 3]!, image.data[pixel * 3 + 1]!, image.data[pixel * 3 + 2]!];
    if (r !== g || g !== b) throw new Error(`pixel ${pixel} is not grey: ${r}, ${g}, ${b}`);
    grey[pixel] = r;
  }
  return grey;
}

// Canny needs no runtime; `create` never touches it.
const setup = { runtime: undefined as unknown as Runtime };

describe('canny against OpenCV', () => {
  it('has goldens with edges to compare (the fixture is not empty)', () => {
    expect(goldens.cases).toHaveLength(2);
    for (const golden of goldens.cases) {
      for (const thresholds of golden.canny) expect(thresholds.edge_pixels).toBeGreaterThan(100);
    }
  });

  for (const golden of goldens.cases) {
    it(`converts ${golden.image} to grey exactly as cv2.cvtColor(RGB2GRAY)`, async () => {
      const frame = await readImage(fixture(golden.image));
      expect([frame.width, frame.height]).toEqual([golden.width, golden.height]);
      expect(differingPixels(rgbToGrey(frame), new Uint8Array(Buffer.from(golden.grey, 'base64')))).toBe(0);
    });

    for (const thresholds of golden.canny) {
      const { low_threshold, high_threshold } = thresholds;
      it(`gives cv2.Canny's edges bit for bit on ${golden.image}, thresholds ${low_threshold}/${high_threshold}`, async () => {
        const frame = await readImage(fixture(golden.image));
        const instance = await cannyPreprocessor.create(setup);
        const output = await instance.process(frame, { low_threshold, high_threshold }, {
          width: golden.width,
          height: golden.height,
          previousOutput: undefined,
        });
        await instance.dispose();
        const expected = unpackEdges(thresholds.edges, golden.width * golden.height);
        const edges = greyChannel(output);
        expect(differingPixels(edges, expected)).toBe(0);
        expect(edges.filter((value) => value === 255)).toHaveLength(thresholds.edge_pixels);
      });
    }
  }

  it('swaps thresholds given the wrong way round, as OpenCV does', async () => {
    const golden = goldens.cases[0]!;
    const grey = rgbToGrey(await readImage(fixture(golden.image)));
    const swapped = cannyEdges({ grey, width: golden.width, height: golden.height, lowThreshold: 200, highThreshold: 100 });
    const expected = unpackEdges(golden.canny.find((pair) => pair.low_threshold === 100)!.edges, grey.length);
    expect(differingPixels(swapped, expected)).toBe(0);
  });
});

describe('canny output', () => {
  it('resizes any frame (RGBA too) to the pipeline size: RGB, edges 255 and the rest 0 in all channels', async () => {
    const width = 50;
    const height = 30;
    const data = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const offset = (y * width + x) * 4;
        const inside = x >= 15 && x < 35 && y >= 8 && y < 22;
        data.set(inside ? [255, 255, 255, 255] : [0, 0, 0, 10], offset);
      }
    }
    const instance = await cannyPreprocessor.create(setup);
    const output = await instance.process({ data, width, height, channels: 4 }, cannyPreprocessor.parameters.parse({}), {
      width: 40,
      height: 24,
      previousOutput: undefined,
    });
    expect(output).toMatchObject({ width: 40, height: 24, channels: 3 });
    expect(output.data).toHaveLength(40 * 24 * 3);
    const edges = greyChannel(output);
    expect(new Set(edges)).toEqual(new Set([0, 255]));
    // The square's outline, and nothing in its flat middle or the flat background far from it.
    expect(edges[12 * 40 + 20]).toBe(0);
    expect(edges[2 * 40 + 2]).toBe(0);
    expect(edges.filter((value) => value === 255).length).toBeGreaterThan(30);
  });
});

describe('canny parameters', () => {
  it("defaults to the forks' 100 / 200 and accepts the whole 0–255 range", () => {
    expect(cannyPreprocessor.parameters.parse({})).toEqual({ low_threshold: 100, high_threshold: 200 });
    expect(cannyPreprocessor.parameters.parse({ low_threshold: 0, high_threshold: 255 })).toEqual({ low_threshold: 0, high_threshold: 255 });
  });

  it('names the field, the value and what was expected', () => {
    const cases: [unknown, string, unknown, RegExp][] = [
      [{ low_threshold: 300 }, 'preprocessor_params.low_threshold', 300, /integer from 0 to 255/],
      [{ high_threshold: -1 }, 'preprocessor_params.high_threshold', -1, /integer from 0 to 255/],
      [{ low_threshold: 10.5 }, 'preprocessor_params.low_threshold', 10.5, /integer from 0 to 255/],
      [{ high_threshold: '200' }, 'preprocessor_params.high_threshold', '200', /integer from 0 to 255/],
      [{ low_threshold: 150, high_threshold: 100 }, 'preprocessor_params.low_threshold', 150, /at most high_threshold \(100\)/],
    ];
    for (const [raw, field, value, expected] of cases) {
      let caught: unknown;
      try {
        parsePreprocessorParameters(cannyPreprocessor, raw);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(raw)).toBeInstanceOf(InvalidArgumentError);
      const error = caught as InvalidArgumentError;
      expect(error.field).toBe(field);
      expect(error.message).toContain(`got ${JSON.stringify(value)}`);
      expect(error.message).toMatch(expected);
      expect(error.message).toContain('"canny"');
    }
  });

  it("reports the same issue through the schema itself (path and wording)", () => {
    const result = cannyPreprocessor.parameters.safeParse({ low_threshold: 220 });
    expect(result.success).toBe(false);
    expect(result.error?.issues).toMatchObject([{ path: ['low_threshold'], message: 'at most high_threshold (200)' }]);
  });

  it('accepts low == high', () => {
    expect(parsePreprocessorParameters(cannyPreprocessor, { low_threshold: 120, high_threshold: 120 })).toEqual({
      low_threshold: 120,
      high_threshold: 120,
    });
  });
});
