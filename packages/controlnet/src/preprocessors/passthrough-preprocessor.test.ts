import type { RgbImage, Runtime } from '@streamdiffusion/core';
import { describe, expect, it } from 'vitest';
import { externalPreprocessor } from './external-preprocessor.js';
import { passthroughPreprocessor } from './passthrough-preprocessor.js';

const setup = { runtime: undefined as unknown as Runtime };

for (const definition of [passthroughPreprocessor, externalPreprocessor]) {
  describe(definition.name, () => {
    it('has no parameters, needs no model and no previous output', () => {
      expect(definition.parameters.parse({})).toEqual({});
      expect(definition.needsModel).toBe(false);
      expect(definition.usesPreviousOutput).toBe(false);
    });

    it('returns an image already at the size unchanged, in a buffer of its own', async () => {
      const frame: RgbImage = { data: Uint8Array.from({ length: 5 * 4 * 3 }, (_, index) => (index * 13) % 256), width: 5, height: 4, channels: 3 };
      const instance = await definition.create(setup);
      const output = await instance.process(frame, {}, { width: 5, height: 4, previousOutput: undefined });
      expect(output).toMatchObject({ width: 5, height: 4, channels: 3 });
      expect(Array.from(output.data)).toEqual(Array.from(frame.data));
      expect(output.data).not.toBe(frame.data);
      await instance.dispose();
    });

    it('resizes to the pipeline size and drops alpha', async () => {
      // A flat colour stays that colour through any resize: the pixels must be exactly it.
      const frame: RgbImage = { data: new Uint8Array(7 * 3 * 4).fill(0).map((_, index) => [200, 100, 50, 7][index % 4]!), width: 7, height: 3, channels: 4 };
      const instance = await definition.create(setup);
      const output = await instance.process(frame, {}, { width: 16, height: 8, previousOutput: undefined });
      expect(output).toMatchObject({ width: 16, height: 8, channels: 3 });
      expect(output.data).toHaveLength(16 * 8 * 3);
      for (let pixel = 0; pixel < 16 * 8; pixel += 1) expect(Array.from(output.data.subarray(pixel * 3, pixel * 3 + 3))).toEqual([200, 100, 50]);
    });
  });
}
