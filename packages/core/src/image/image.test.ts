import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/errors.js';
import { imageToTensor, readImage, resizeImage, tensorToImage, writeImage, type RgbImage } from './image.js';

/** A width × height RGB image whose pixel (x, y) is (x·40, y·60, 200). */
function gradient(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) data.set([x * 40, y * 60, 200], (y * width + x) * 3);
  }
  return { data, width, height, channels: 3 };
}

describe('images', () => {
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'images-'));
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('writes and reads a PNG losslessly', async () => {
    const image = gradient(5, 4);
    await writeImage(join(folder, 'a.png'), image);
    const read = await readImage(join(folder, 'a.png'));
    expect(read).toMatchObject({ width: 5, height: 4, channels: 3 });
    expect(Array.from(read.data)).toEqual(Array.from(image.data));
  });

  it('reads a base64 data: URL as the file it encodes', async () => {
    const image = gradient(5, 4);
    await writeImage(join(folder, 'b.png'), image);
    const url = `data:image/png;base64,${(await readFile(join(folder, 'b.png'))).toString('base64')}`;
    expect(Array.from((await readImage(url)).data)).toEqual(Array.from(image.data));
  });

  it('writes a JPEG that reads back close to the original', async () => {
    const flat: RgbImage = { data: new Uint8Array(16 * 16 * 3).fill(120), width: 16, height: 16, channels: 3 };
    await writeImage(join(folder, 'b.jpg'), flat, { quality: 95 });
    const read = await readImage(join(folder, 'b.jpg'));
    expect(Math.max(...Array.from(read.data, (value) => Math.abs(value - 120)))).toBeLessThanOrEqual(2);
  });

  it('turns RGBA pixels into a planar [1, 3, H, W] tensor in [-1, 1], dropping alpha', async () => {
    // 2 × 1 RGBA: a red pixel and a blue one, the second half transparent.
    const rgba: RgbImage = { data: Uint8Array.from([255, 0, 0, 255, 0, 0, 255, 128]), width: 2, height: 1, channels: 4 };
    const tensor = await imageToTensor(rgba, { width: 2, height: 1 });
    expect(tensor.dims).toEqual([1, 3, 1, 2]);
    expect(Array.from(tensor.data)).toEqual([1, -1, -1, -1, -1, 1]);
  });

  it('takes raw pixels already at the size without libvips, to the same values as a decoded file', async () => {
    const rgb = gradient(6, 4);
    const rgba: RgbImage = { ...rgb, channels: 4, data: new Uint8Array(6 * 4 * 4).map((_, index) => (index % 4 === 3 ? 99 : rgb.data[Math.floor(index / 4) * 3 + (index % 4)]!)) };
    await writeImage(join(folder, 'c.png'), rgb);
    const throughLibvips = await imageToTensor(join(folder, 'c.png'), { width: 6, height: 4 });
    for (const raw of [rgb, rgba]) {
      const direct = await imageToTensor(raw, { width: 6, height: 4 });
      expect(Array.from(direct.data)).toEqual(Array.from(throughLibvips.data));
    }
  });

  it('resizes pixels as the pipeline resizes its input, and passes RGB already at the size through', async () => {
    const small: RgbImage = { data: new Uint8Array(7 * 5 * 4).map((_, index) => (index % 4 === 3 ? 255 : 90)), width: 7, height: 5, channels: 4 };
    const resized = await resizeImage(small, { width: 16, height: 12 });
    expect(resized).toMatchObject({ width: 16, height: 12, channels: 3 });
    expect(new Set(resized.data)).toEqual(new Set([90]));
    const same = gradient(16, 12);
    expect(await resizeImage(same, { width: 16, height: 12 })).toBe(same);
  });

  it('resizes any size to the model resolution', async () => {
    const small: RgbImage = { data: new Uint8Array(7 * 5 * 3).fill(51), width: 7, height: 5, channels: 3 };
    const tensor = await imageToTensor(small, { width: 64, height: 48 });
    expect(tensor.dims).toEqual([1, 3, 48, 64]);
    // A flat image stays flat through a resize: 51 / 127.5 − 1 = −0.6.
    for (const value of tensor.data) expect(value).toBeCloseTo(-0.6, 6);
  });

  it('decodes a tensor the way diffusers postprocesses it', () => {
    const values = Float32Array.from([-1, 0, 1, 2, -0.5, 0.003921, 0.5, -2, 0.2]);
    // Three planes of a 3 × 1 image: R = (-1, 0, 1), G = (2, -0.5, 0.003921), B = (0.5, -2, 0.2).
    const image = tensorToImage(values, [1, 3, 1, 3]);
    expect(Array.from(image.data)).toEqual([0, 255, 191, 128, 64, 0, 255, 128, 153]);
    // In float32 these land exactly on 76.5, 178.5 and 229.5; numpy rounds halves to even
    // (values found and checked with numpy: 76, 178, 230).
    const halves = tensorToImage(Float32Array.from([-0.4, 0.4, 0.8]), [1, 3, 1, 1]);
    expect(Array.from(halves.data)).toEqual([76, 178, 230]);
  });

  it('names the field when raw pixels do not add up', async () => {
    const wrong: RgbImage = { data: new Uint8Array(10), width: 2, height: 2, channels: 3 };
    await expect(imageToTensor(wrong, { width: 2, height: 2 })).rejects.toThrow(InvalidArgumentError);
    await expect(imageToTensor(wrong, { width: 2, height: 2 })).rejects.toThrow('image.data: expected width × height × channels = 12 bytes, got "10 bytes"');
    expect(() => tensorToImage(new Float32Array(8), [1, 2, 2, 2])).toThrow('dims: expected [1, 3, height, width], got [1,2,2,2]');
    await expect(writeImage(join(folder, 'c.gif'), gradient(2, 2))).rejects.toThrow(/path: expected a file name ending in \.png, \.jpg or \.jpeg/);
  });
});
