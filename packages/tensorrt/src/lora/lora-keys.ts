/**
 * LoRA tensor names → the layers they change. Two families of names are read:
 *
 * - kohya (sd-scripts, A1111, most files on Civitai): `lora_unet_down_blocks_0_…_to_q.lora_down.weight`,
 *   `.lora_up.weight`, `.alpha`; the text encoder as `lora_te_text_model_encoder_layers_0_…`. Module
 *   paths lose their dots to underscores, so they are matched against the model's own layer names
 *   written the same way.
 * - diffusers / PEFT: `unet.down_blocks.0.….to_q.lora_A.weight` / `lora_B.weight` (and the older
 *   `lora.down.weight` / `lora.up.weight`, `processor.to_q_lora.down.weight`), `text_encoder.text_model.…`;
 *   an optional `.alpha` beside them (diffusers writes it when it converts kohya files).
 *
 * The model side is the layer map read from the ONNX graph (`layerWeights`), keyed by module path
 * without the component prefix (`down_blocks.0.…`, `encoder.layers.0.…`).
 */
import type { Safetensors, SafetensorsTensor } from './safetensors.js';

/** The networks a LoRA changes. */
export const LORA_COMPONENTS = ['unet', 'text_encoder'] as const;
export type LoraComponent = (typeof LORA_COMPONENTS)[number];

/** One changed layer: ΔW = (α / rank) · up · down. */
export interface LoraLayer {
  readonly component: LoraComponent;
  /** The module path in the model's layer map. */
  readonly module: string;
  /** [rank, in] or [rank, in, kh, kw]. */
  readonly down: SafetensorsTensor;
  /** [out, rank] or [out, rank, 1, 1]. */
  readonly up: SafetensorsTensor;
  /** α; when the file has none, the rank (a scale of 1). */
  readonly alpha: number;
}

export interface LoraMatch {
  readonly layers: readonly LoraLayer[];
  /** LoRA modules (as the file names them) that no layer of the model matches. */
  readonly unmatched: readonly string[];
}

type Role = 'down' | 'up' | 'alpha';

/** Splits a tensor name into the module it belongs to (as the file writes it) and its role. */
function splitName(name: string): { module: string; role: Role } | undefined {
  const suffixes: [string, Role][] = [
    ['.lora_down.weight', 'down'],
    ['.lora_up.weight', 'up'],
    ['.lora_A.weight', 'down'],
    ['.lora_B.weight', 'up'],
    ['.lora.down.weight', 'down'],
    ['.lora.up.weight', 'up'],
    ['_lora.down.weight', 'down'],
    ['_lora.up.weight', 'up'],
    ['.alpha', 'alpha'],
  ];
  for (const [suffix, role] of suffixes) if (name.endsWith(suffix)) return { module: name.slice(0, -suffix.length), role };
  return undefined;
}

const underscored = (path: string): string => path.replaceAll('.', '_');

/** Where a file's module name points: the component and the module path as the model names it. */
function locate(fileModule: string, layers: Readonly<Record<LoraComponent, ReadonlyMap<string, unknown>>>): { component: LoraComponent; module: string } | undefined {
  // kohya: lora_unet_<path with underscores>, lora_te_ / lora_te1_ <text_model_…>.
  const kohya = /^lora_(unet|te1?)_(.+)$/.exec(fileModule);
  if (kohya !== null) {
    const component: LoraComponent = kohya[1] === 'unet' ? 'unet' : 'text_encoder';
    const key = kohya[2]!.replace(/^text_model_/, '');
    for (const module of layers[component].keys()) if (underscored(module.replace(/^text_model\./, '')) === key) return { component, module };
    return undefined;
  }
  // diffusers / PEFT: unet.<path>, text_encoder.<path>; older files put `.processor.` before the projection.
  const dotted = /^(unet|text_encoder)\.(.+)$/.exec(fileModule);
  if (dotted === null) return undefined;
  const component = dotted[1] as LoraComponent;
  const path = dotted[2]!
    .replace(/^text_model\./, '')
    .replace(/\.processor\.(to_q|to_k|to_v|to_out)$/, '.$1')
    .replace(/\.to_out$/, '.to_out.0');
  const module = [path, `text_model.${path}`].find((candidate) => layers[component].has(candidate));
  return module === undefined ? undefined : { component, module };
}

/** The layers a LoRA file changes in a model with these layer maps. */
export function matchLora(file: Safetensors, layers: Readonly<Record<LoraComponent, ReadonlyMap<string, unknown>>>): LoraMatch {
  const parts = new Map<string, Partial<Record<Role, SafetensorsTensor>>>();
  for (const [name, tensor] of file.tensors) {
    const split = splitName(name);
    if (split === undefined) continue;
    parts.set(split.module, { ...parts.get(split.module), [split.role]: tensor });
  }
  const matched: LoraLayer[] = [];
  const unmatched: string[] = [];
  for (const [fileModule, { down, up, alpha }] of parts) {
    if (down === undefined || up === undefined) continue; // an alpha alone, or half a pair
    const found = locate(fileModule, layers);
    if (found === undefined) {
      unmatched.push(fileModule);
      continue;
    }
    const rank = down.shape[0]!;
    matched.push({ ...found, down, up, alpha: alpha === undefined ? rank : alpha.data[0]! });
  }
  return { layers: matched, unmatched };
}
