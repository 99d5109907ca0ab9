/**
 * Example workflows: written by hand in ComfyUI's API format (`workflows/*.api.json`, what
 * `POST /prompt` takes and what the real-ComfyUI tests run), and turned here into the editor's
 * format (`workflows/*.json`: nodes with positions, widget values in widget order, links), which
 * ComfyUI's "Load" and the pack's `example_workflows/` templates take.
 *
 * The editor lists a node's widget values in input order (required, then optional), skipping
 * socket inputs; an INT named seed gets a "control after generate" value after it, and an image
 * upload COMBO an "upload" value (ComfyUI frontend 1.x rules).
 */
import { z } from 'zod';
import { isWidget } from '../catalogue/node-catalogue.js';

/** A node in ComfyUI's API format: its class and its inputs (a link is `[node id, output index]`). */
const apiNodeSchema = z.object({
  class_type: z.string().min(1),
  inputs: z.record(z.string(), z.unknown()),
  _meta: z.object({ title: z.string() }).partial().optional(),
});
export const apiWorkflowSchema = z.record(z.string().regex(/^\d+$/), apiNodeSchema);
export type ApiWorkflow = z.infer<typeof apiWorkflowSchema>;

/** What the conversion reads from `/object_info` about a node. */
export interface NodeInfo {
  readonly input: { readonly required: Readonly<Record<string, readonly unknown[]>>; readonly optional?: Readonly<Record<string, readonly unknown[]>> };
  readonly input_order: { readonly required: readonly string[]; readonly optional?: readonly string[] };
  readonly output: readonly string[];
  readonly output_name: readonly string[];
  readonly display_name?: string;
}

/**
 * ComfyUI's own nodes the examples use, as its `/object_info` lists them (0.3.64; the real-ComfyUI
 * test checks these against the server). LoadImage's COMBO lists the input folder's files.
 */
export const COMFY_CORE_NODES: Readonly<Record<string, NodeInfo>> = {
  LoadImage: {
    input: { required: { image: [[], { image_upload: true }] } },
    input_order: { required: ['image'] },
    output: ['IMAGE', 'MASK'],
    output_name: ['IMAGE', 'MASK'],
    display_name: 'Load Image',
  },
  SaveImage: {
    input: { required: { images: ['IMAGE', {}], filename_prefix: ['STRING', {}] } },
    input_order: { required: ['images', 'filename_prefix'] },
    output: [],
    output_name: [],
    display_name: 'Save Image',
  },
};


interface InputSlot {
  readonly name: string;
  readonly type: string;
  readonly optional: boolean;
  /** A widget (a value in widgets_values) rather than a socket. */
  readonly widget: boolean;
  /** Values the editor stores after this widget's own (seed control, upload button). */
  readonly extra: readonly unknown[];
}

/** A node's inputs in the order the editor lays them out. */
export function inputSlots(info: NodeInfo): InputSlot[] {
  const slots: InputSlot[] = [];
  for (const optional of [false, true]) {
    const specs = (optional ? info.input.optional : info.input.required) ?? {};
    for (const name of (optional ? info.input_order.optional : info.input_order.required) ?? []) {
      const [kind, options = {}] = specs[name] ?? [];
      const type = Array.isArray(kind) ? 'COMBO' : String(kind);
      const settings = options as { control_after_generate?: boolean; image_upload?: boolean };
      const widget = isWidget(type);
      const seed = type === 'INT' && (settings.control_after_generate ?? (name === 'seed' || name === 'noise_seed'));
      slots.push({ name, type, optional, widget, extra: [...(seed ? ['fixed'] : []), ...(settings.image_upload === true ? ['image'] : [])] });
    }
  }
  return slots;
}

const isLink = (value: unknown): value is readonly [string, number] => Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'number';

export interface UiNode {
  readonly id: number;
  readonly type: string;
  readonly title?: string;
  readonly pos: readonly [number, number];
  readonly size: readonly [number, number];
  readonly flags: Record<string, never>;
  readonly order: number;
  readonly mode: 0;
  readonly inputs: readonly { readonly name: string; readonly type: string; readonly link: number | null; readonly shape?: 7 }[];
  readonly outputs: readonly { readonly name: string; readonly type: string; readonly links: number[]; readonly slot_index: number }[];
  readonly properties: { readonly 'Node name for S&R': string };
  readonly widgets_values: readonly unknown[];
}

/** The editor's workflow format (version 0.4). */
export interface UiWorkflow {
  readonly last_node_id: number;
  readonly last_link_id: number;
  readonly nodes: readonly UiNode[];
  /** `[link id, origin node, origin slot, target node, target slot, type]`. */
  readonly links: readonly (readonly [number, number, number, number, number, string])[];
  readonly groups: readonly never[];
  readonly config: Record<string, never>;
  readonly extra: { readonly ds: { readonly scale: number; readonly offset: readonly [number, number] } };
  readonly version: 0.4;
}

/** The editor's form of an API-format workflow, laid out left to right in columns by depth. */
export function toUiWorkflow(api: ApiWorkflow, infos: Readonly<Record<string, NodeInfo>>): UiWorkflow {
  const ids = Object.keys(api).sort((a, b) => Number(a) - Number(b));
  const infoOf = (id: string): NodeInfo => {
    const node = api[id]!;
    const info = infos[node.class_type];
    if (info === undefined) throw new Error(`workflow node ${id}: no /object_info entry for ${node.class_type}`);
    return info;
  };
  const sources = (id: string): [string, number][] => Object.values(api[id]!.inputs).filter(isLink).map(([from, slot]) => [from, slot]);
  for (const id of ids) {
    for (const [from] of sources(id)) if (api[from] === undefined) throw new Error(`workflow node ${id}: links to node ${from}, which is not in the workflow`);
  }
  // Depth: the longest chain of links leading to a node; the order: by depth, then id.
  const depths = new Map<string, number>();
  const depthOf = (id: string, seen: readonly string[] = []): number => {
    if (seen.includes(id)) throw new Error(`workflow: the links loop through node ${id}`);
    const known = depths.get(id);
    if (known !== undefined) return known;
    const depth = Math.max(-1, ...sources(id).map(([from]) => depthOf(from, [...seen, id]))) + 1;
    depths.set(id, depth);
    return depth;
  };
  for (const id of ids) depthOf(id);
  const order = [...ids].sort((a, b) => depthOf(a) - depthOf(b) || Number(a) - Number(b));

  const links: [number, number, number, number, number, string][] = [];
  const outgoing = new Map<string, number[]>();
  const columnHeights = new Map<number, number>();
  const nodes = order.map((id, position): UiNode => {
    const node = api[id]!;
    const info = infoOf(id);
    const inputs: { name: string; type: string; link: number | null; shape?: 7 }[] = [];
    const widgets: unknown[] = [];
    const slots = inputSlots(info);
    for (const slot of slots) {
      const value = node.inputs[slot.name];
      if (!slot.widget) {
        let link: number | null = null;
        if (isLink(value)) {
          const [from, fromSlot] = value;
          link = links.length + 1;
          links.push([link, Number(from), fromSlot, Number(id), inputs.length, slot.type]);
          outgoing.set(`${from}:${fromSlot}`, [...(outgoing.get(`${from}:${fromSlot}`) ?? []), link]);
        } else if (value !== undefined) {
          throw new Error(`workflow node ${id} (${node.class_type}): ${slot.name} is a ${slot.type} socket; expected a link [node id, output], got ${JSON.stringify(value)}`);
        } else if (!slot.optional) {
          throw new Error(`workflow node ${id} (${node.class_type}): the required socket ${slot.name} is not connected`);
        }
        inputs.push({ name: slot.name, type: slot.type, link, ...(slot.optional ? { shape: 7 as const } : {}) });
      } else {
        if (value === undefined || isLink(value)) throw new Error(`workflow node ${id} (${node.class_type}): widget ${slot.name} needs a value, got ${JSON.stringify(value)}`);
        widgets.push(value, ...slot.extra);
      }
    }
    for (const name of Object.keys(node.inputs)) {
      if (!slots.some((slot) => slot.name === name)) throw new Error(`workflow node ${id} (${node.class_type}): no input named ${name}`);
    }
    const depth = depthOf(id);
    const height = 46 + 24 * Math.max(inputs.length, info.output.length) + 28 * widgets.length + (node.class_type === 'LoadImage' ? 260 : 0);
    const top = columnHeights.get(depth) ?? 40;
    columnHeights.set(depth, top + height + 40);
    const title = node._meta?.title;
    return {
      id: Number(id),
      type: node.class_type,
      ...(title !== undefined && title !== info.display_name ? { title } : {}),
      pos: [40 + 420 * depth, top],
      size: [360, height],
      flags: {},
      order: position,
      mode: 0,
      inputs,
      outputs: [],
      properties: { 'Node name for S&R': node.class_type },
      widgets_values: widgets,
    };
  });
  // Outputs last: their links are known once every node's inputs are.
  const withOutputs = nodes.map((node) => {
    const info = infoOf(String(node.id));
    return { ...node, outputs: info.output.map((type, slot) => ({ name: info.output_name[slot] ?? type, type, links: outgoing.get(`${node.id}:${slot}`) ?? [], slot_index: slot })) };
  });
  return {
    last_node_id: Math.max(0, ...ids.map(Number)),
    last_link_id: links.length,
    nodes: withOutputs,
    links,
    groups: [],
    config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    version: 0.4,
  };
}
