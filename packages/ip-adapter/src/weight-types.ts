/**
 * How strongly each of the UNet's cross-attention layers, and each denoising step, takes the image
 * tokens. `weight_type` names a per-layer preset, with the names and values of ComfyUI_IPAdapter_plus
 * (the node pack the StreamDiffusion users know them from); `step_schedule` a curve over the
 * denoising steps. The UNet takes the product as its `ip_adapter_scale` input, one row per batch
 * entry, so entries at different steps of one stream batch get different weights.
 */
import { InvalidArgumentError } from '@streamdiffusion/core';

/** Per-layer presets (ComfyUI_IPAdapter_plus' `weight_type`). */
export const WEIGHT_TYPES = Object.freeze([
  'linear',
  'ease in',
  'ease out',
  'ease in-out',
  'reverse in-out',
  'weak input',
  'weak output',
  'weak middle',
  'strong middle',
  'style transfer',
  'composition',
  'strong style transfer',
  'style and composition',
  'strong style and composition',
  'style transfer precise',
  'composition precise',
] as const);
export type WeightType = (typeof WEIGHT_TYPES)[number];

/** Curves over the denoising steps (`step_schedule`). */
export const STEP_SCHEDULES = Object.freeze(['constant', 'ease in', 'ease out', 'ease in-out', 'reverse in-out'] as const);
export type StepSchedule = (typeof STEP_SCHEDULES)[number];

/** Where a cross-attention layer sits: ComfyUI's input, middle and output blocks. */
export type LayerBlock = 'input' | 'middle' | 'output';

/** The block of a diffusers attention name (`down_blocks.1.attentions.0.transformer_blocks.0.attn2`). */
export function layerBlock(name: string): LayerBlock {
  if (name.startsWith('down_blocks.')) return 'input';
  if (name.startsWith('mid_block.')) return 'middle';
  if (name.startsWith('up_blocks.')) return 'output';
  throw new InvalidArgumentError({ field: 'layers', value: name, expected: 'a diffusers cross-attention name in down_blocks, mid_block or up_blocks' });
}

/**
 * The layer order of an SD 1.5 / 2.1 UNet (and the tiny test models of the same blocks): six
 * down-block layers, nine up-block layers, then the mid block. It is the order diffusers loads an
 * IP-Adapter checkpoint's `1.to_k_ip`, `3.to_k_ip`, … in, and the numbering of ComfyUI's presets.
 */
function isSdLayout(layers: readonly string[]): boolean {
  const blocks = layers.map(layerBlock);
  return layers.length === 16 && blocks.slice(0, 6).every((block) => block === 'input') && blocks.slice(6, 15).every((block) => block === 'output') && blocks[15] === 'middle';
}

const STYLE = [0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15];
const STRONG_STYLE = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/** The presets that name layers by number. */
const POSITIONAL_TYPES = ['style transfer', 'composition', 'strong style transfer', 'style and composition', 'strong style and composition', 'style transfer precise', 'composition precise'] as const;
type PositionalType = (typeof POSITIONAL_TYPES)[number];
const POSITIONAL: ReadonlySet<WeightType> = new Set(POSITIONAL_TYPES);
const isPositional = (type: WeightType): type is PositionalType => POSITIONAL.has(type);

/** ComfyUI_IPAdapter_plus' per-layer values for the SD 1.5 layout, by layer number. */
function sdPreset(type: PositionalType, weight: number, composition: number): Map<number, number> {
  const of = (indices: readonly number[], value: number): [number, number][] => indices.map((index) => [index, value]);
  switch (type) {
    case 'style transfer':
      return new Map(of(STYLE, weight));
    case 'composition':
      return new Map([
        [4, weight * 0.25],
        [5, weight],
      ]);
    case 'strong style transfer':
      return new Map(of(STRONG_STYLE, weight));
    case 'style and composition':
    case 'style transfer precise':
      return new Map([...of(STYLE, weight), [4, composition * 0.25], [5, composition]]);
    case 'strong style and composition':
      return new Map([...of(STRONG_STYLE, weight), [4, composition], [5, composition]]);
    case 'composition precise':
      return new Map([...of([0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15], weight), ...of([6, 7, 8], weight * 0.1), [4, composition * 0.25], [5, composition]]);
  }
}

/** Whether a preset names layers by position (and so needs the SD 1.5 / 2.1 layer layout). */
export function needsSdLayout(type: WeightType): boolean {
  return isPositional(type);
}

/**
 * The weight of every cross-attention layer for `scale` under a preset. `layers` are the UNet's
 * cross-attention names in the order of its `ip_adapter_scale` input (the export tool writes them to
 * `unet/ip_adapter.json`). `composition` is the composition layers' weight for the presets that mix
 * style and composition (default: `scale`).
 * @throws {InvalidArgumentError} for a positional preset on a UNet without the SD 1.5 / 2.1 layout.
 */
export function layerWeights(type: WeightType, layers: readonly string[], scale: number, composition = scale): Float32Array {
  const count = layers.length;
  const weights = new Float32Array(count);
  if (isPositional(type)) {
    if (!isSdLayout(layers)) {
      throw new InvalidArgumentError({
        field: 'weight_type',
        value: type,
        expected: `a preset this UNet's ${count} cross-attention layers allow: "${type}" names layers of the SD 1.5 / 2.1 layout (6 down, 9 up, 1 mid); use linear, the ease curves or the weak/strong presets`,
      });
    }
    const preset = sdPreset(type, scale, composition);
    for (let index = 0; index < count; index += 1) weights[index] = preset.get(index) ?? 0;
    return weights;
  }
  const half = count / 2;
  for (const [index, name] of layers.entries()) {
    const block = layerBlock(name);
    let weight = scale;
    // The curves and the weak/strong presets, as ComfyUI_IPAdapter_plus computes them over its layer numbers.
    if (type === 'ease in') weight = scale * (0.05 + 0.95 * (1 - index / count));
    else if (type === 'ease out') weight = scale * (0.05 + 0.95 * (index / count));
    else if (type === 'ease in-out') weight = scale * (0.05 + 0.95 * (1 - Math.abs(index - half) / half));
    else if (type === 'reverse in-out') weight = scale * (0.05 + 0.95 * (Math.abs(index - half) / half));
    else if (type === 'weak input' && block === 'input') weight = scale * 0.2;
    else if (type === 'weak middle' && block === 'middle') weight = scale * 0.2;
    else if (type === 'weak output' && block === 'output') weight = scale * 0.2;
    else if (type === 'strong middle' && block !== 'middle') weight = scale * 0.2;
    weights[index] = weight;
  }
  return weights;
}

/**
 * The factor of one denoising step: `step` is the entry's position in t_index_list, `stepCount` its
 * length. 0 outside `start_at`…`end_at` (fractions of the steps, as ControlNet's guidance range);
 * inside, the schedule's curve over the steps (the layer curves' formulas with steps for layers).
 */
export function stepFactor(schedule: StepSchedule, step: number, stepCount: number, range: { readonly start: number; readonly end: number } = { start: 0, end: 1 }): number {
  const inside = step / stepCount >= range.start && (step + 1) / stepCount <= range.end + 1e-9;
  if (!inside) return 0;
  const half = stepCount / 2;
  switch (schedule) {
    case 'constant':
      return 1;
    case 'ease in':
      return 0.05 + 0.95 * (1 - step / stepCount);
    case 'ease out':
      return 0.05 + 0.95 * (step / stepCount);
    case 'ease in-out':
      return 0.05 + 0.95 * (1 - Math.abs(step - half) / half);
    case 'reverse in-out':
      return 0.05 + 0.95 * (Math.abs(step - half) / half);
  }
}
