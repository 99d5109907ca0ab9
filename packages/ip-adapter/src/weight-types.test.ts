import { InvalidArgumentError } from '@streamdiffusion/core';
import { describe, expect, it } from 'vitest';
import { layerBlock, layerWeights, stepFactor, WEIGHT_TYPES } from './weight-types.js';

/** The cross-attention layers of an SD 1.5 / 2.1 UNet in diffusers' order (what unet/ip_adapter.json lists). */
const SD_LAYERS = [
  ...[0, 1, 2].flatMap((block) => [0, 1].map((attention) => `down_blocks.${block}.attentions.${attention}.transformer_blocks.0.attn2`)),
  ...[1, 2, 3].flatMap((block) => [0, 1, 2].map((attention) => `up_blocks.${block}.attentions.${attention}.transformer_blocks.0.attn2`)),
  'mid_block.attentions.0.transformer_blocks.0.attn2',
];

const rounded = (weights: Float32Array): number[] => Array.from(weights, (weight) => Math.round(weight * 1e4) / 1e4);

describe('per-layer presets', () => {
  it('gives every layer the scale for linear', () => {
    expect(rounded(layerWeights('linear', SD_LAYERS, 0.7))).toEqual(Array(16).fill(0.7));
  });

  it("gives ComfyUI_IPAdapter_plus' SD 1.5 values for the positional presets (layers 0-5 input, 6-14 output, 15 middle)", () => {
    // Values from ComfyUI_IPAdapter_plus' ipadapter_execute for SD 1.5, written out per layer number.
    const w = 0.8;
    const c = 0.5;
    expect(rounded(layerWeights('style transfer', SD_LAYERS, w))).toEqual([w, w, w, w, 0, 0, 0, 0, 0, w, w, w, w, w, w, w]);
    expect(rounded(layerWeights('composition', SD_LAYERS, w))).toEqual([0, 0, 0, 0, 0.2, w, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(rounded(layerWeights('strong style transfer', SD_LAYERS, w))).toEqual([w, w, w, w, 0, 0, w, w, w, w, w, w, w, w, w, w]);
    expect(rounded(layerWeights('style and composition', SD_LAYERS, w, c))).toEqual([w, w, w, w, 0.125, c, 0, 0, 0, w, w, w, w, w, w, w]);
    expect(rounded(layerWeights('strong style and composition', SD_LAYERS, w, c))).toEqual([w, w, w, w, c, c, w, w, w, w, w, w, w, w, w, w]);
    expect(rounded(layerWeights('composition precise', SD_LAYERS, w, c))).toEqual([w, w, w, w, 0.125, c, 0.08, 0.08, 0.08, w, w, w, w, w, w, w]);
    // The composition weight defaults to the scale.
    expect(rounded(layerWeights('style transfer precise', SD_LAYERS, w))).toEqual([w, w, w, w, 0.2, w, 0, 0, 0, w, w, w, w, w, w, w]);
  });

  it('weakens blocks by name and draws the ease curves over the layer numbers', () => {
    expect(rounded(layerWeights('weak input', SD_LAYERS, 1))).toEqual([...Array(6).fill(0.2), ...Array(9).fill(1), 1]);
    expect(rounded(layerWeights('weak output', SD_LAYERS, 1))).toEqual([...Array(6).fill(1), ...Array(9).fill(0.2), 1]);
    expect(rounded(layerWeights('weak middle', SD_LAYERS, 1))).toEqual([...Array(15).fill(1), 0.2]);
    expect(rounded(layerWeights('strong middle', SD_LAYERS, 1))).toEqual([...Array(15).fill(0.2), 1]);
    const easeIn = layerWeights('ease in', SD_LAYERS, 1);
    expect(easeIn[0]).toBeCloseTo(1, 6);
    expect(easeIn[15]).toBeCloseTo(0.05 + 0.95 / 16, 6);
    expect(Array.from(easeIn).every((weight, index) => index === 0 || weight < easeIn[index - 1]!)).toBe(true);
    const easeOut = layerWeights('ease out', SD_LAYERS, 2);
    expect(easeOut[0]).toBeCloseTo(0.1, 6);
    expect(easeOut[8]).toBeCloseTo(2 * (0.05 + 0.95 * 0.5), 6);
    expect(layerWeights('ease in-out', SD_LAYERS, 1)[8]).toBeCloseTo(1, 6);
    expect(layerWeights('reverse in-out', SD_LAYERS, 1)[8]).toBeCloseTo(0.05, 6);
  });

  it('refuses a positional preset on a UNet without the SD layout, naming the key; the others work on any layout', () => {
    const few = SD_LAYERS.slice(0, 3);
    expect(() => layerWeights('style transfer', few, 1)).toThrow(InvalidArgumentError);
    expect(() => layerWeights('style transfer', few, 1)).toThrow(/weight_type.*3 cross-attention layers.*"style transfer" names layers/s);
    expect(rounded(layerWeights('weak input', few, 1))).toEqual([0.2, 0.2, 0.2]);
  });

  it('knows every preset and which block a layer is in', () => {
    for (const type of WEIGHT_TYPES) expect(layerWeights(type, SD_LAYERS, 1)).toHaveLength(16);
    expect(SD_LAYERS.map(layerBlock)).toEqual([...Array(6).fill('input'), ...Array(9).fill('output'), 'middle']);
    expect(() => layerBlock('conv_in')).toThrow(InvalidArgumentError);
  });
});

describe('per-step factors', () => {
  it('is 1 for a constant schedule and 0 outside start_at…end_at', () => {
    expect([0, 1, 2, 3].map((step) => stepFactor('constant', step, 4))).toEqual([1, 1, 1, 1]);
    expect([0, 1, 2, 3].map((step) => stepFactor('constant', step, 4, { start: 0.25, end: 0.75 }))).toEqual([0, 1, 1, 0]);
    expect([0, 1].map((step) => stepFactor('constant', step, 2, { start: 0, end: 0.5 }))).toEqual([1, 0]);
  });

  it('draws the ease curves over the steps', () => {
    expect([0, 1, 2, 3].map((step) => stepFactor('ease in', step, 4))).toEqual([0, 1, 2, 3].map((step) => 0.05 + 0.95 * (1 - step / 4)));
    expect([0, 1, 2, 3].map((step) => stepFactor('ease out', step, 4))).toEqual([0, 1, 2, 3].map((step) => 0.05 + 0.95 * (step / 4)));
    expect(stepFactor('ease in-out', 2, 4)).toBeCloseTo(1, 9);
    expect(stepFactor('reverse in-out', 2, 4)).toBeCloseTo(0.05, 9);
    expect(stepFactor('ease in', 0, 1)).toBe(1);
  });
});
