/**
 * ComfyUI's `/object_info` node format, as a zod schema of our own (read from ComfyUI 0.3.64's
 * `server.py` node_info and `comfy_api/latest/_io.py` get_v1_info), and the entry each of our nodes
 * should produce there. The CI tests validate every expected entry with the schema; the real-ComfyUI
 * tests compare what ComfyUI serialises from the generated Python classes with these entries.
 */
import { z } from 'zod';
import type { InputSpec, NodeSpec } from './node-catalogue.js';

/** One input: `[type, options]`; the type is a string (COMBO, INT, a custom socket type…). */
const inputEntry = z.tuple([z.string().min(1), z.record(z.string(), z.unknown())]);

const widgetOptions = {
  INT: z.object({ default: z.number().int(), min: z.number().int(), max: z.number().int(), step: z.number().int().positive() }),
  FLOAT: z.object({ default: z.number(), min: z.number(), max: z.number(), step: z.number().positive() }),
  STRING: z.object({ default: z.string(), multiline: z.boolean() }),
  BOOLEAN: z.object({ default: z.boolean() }),
  COMBO: z.object({ options: z.array(z.string()).min(1), multiselect: z.literal(false) }),
} as const;

/** A node as `/object_info` lists it. */
export const objectInfoNodeSchema = z
  .object({
    input: z.object({
      required: z.record(z.string(), inputEntry),
      optional: z.record(z.string(), inputEntry).optional(),
      hidden: z.record(z.string(), z.tuple([z.string()])).optional(),
    }),
    input_order: z.object({ required: z.array(z.string()), optional: z.array(z.string()).optional(), hidden: z.array(z.string()).optional() }),
    output: z.array(z.string().min(1)),
    output_is_list: z.array(z.boolean()),
    output_name: z.array(z.string()),
    output_tooltips: z.array(z.string().nullable()),
    name: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/),
    display_name: z.string().min(1),
    description: z.string(),
    python_module: z.string().min(1),
    category: z.string().min(1),
    output_node: z.boolean(),
    deprecated: z.boolean(),
    experimental: z.boolean(),
    api_node: z.boolean(),
  })
  .strict()
  .superRefine((node, context) => {
    // The orders name exactly the inputs; the output lists line up; each widget's options are right for its type.
    for (const group of ['required', 'optional'] as const) {
      const keys = Object.keys(node.input[group] ?? {});
      if (JSON.stringify(keys) !== JSON.stringify(node.input_order[group] ?? (group === 'optional' ? [] : []))) {
        context.addIssue({ code: 'custom', path: ['input_order', group], message: `must list the ${group} inputs in order (${keys.join(', ')})` });
      }
      for (const [id, [type, options]] of Object.entries(node.input[group] ?? {})) {
        const schema = widgetOptions[type as keyof typeof widgetOptions];
        const checked = schema?.safeParse(options);
        if (checked !== undefined && !checked.success) context.addIssue({ code: 'custom', path: ['input', group, id], message: `${type} options: ${checked.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`).join('; ')}` });
        if (type === 'INT' || type === 'FLOAT') {
          const { default: value, min, max } = options as { default: number; min: number; max: number };
          if (!(min <= value && value <= max)) context.addIssue({ code: 'custom', path: ['input', group, id], message: `default ${value} outside [${min}, ${max}]` });
        }
        if (type === 'COMBO') {
          const { default: value, options: choices } = options as { default?: string; options: string[] };
          if (value !== undefined && !choices.includes(value)) context.addIssue({ code: 'custom', path: ['input', group, id], message: `default ${value} is not an option` });
        }
      }
    }
    const lengths = [node.output.length, node.output_is_list.length, node.output_name.length, node.output_tooltips.length];
    if (new Set(lengths).size !== 1) context.addIssue({ code: 'custom', path: ['output'], message: `output lists differ in length (${lengths.join(', ')})` });
  });

export type ObjectInfoNode = z.infer<typeof objectInfoNodeSchema>;

/** The options ComfyUI's V3 `Input.as_dict()` gives an input, in its key order (None values pruned, `optional` dropped). */
function optionsOf(input: InputSpec): Record<string, unknown> {
  const base: Record<string, unknown> = { tooltip: input.tooltip };
  switch (input.type) {
    case 'INT':
    case 'FLOAT':
      return { ...base, default: input.default, min: input.min, max: input.max, step: input.step };
    case 'STRING':
      return { ...base, default: input.default, multiline: input.multiline === true };
    case 'BOOLEAN':
      return { ...base, default: input.default };
    case 'COMBO':
      return { ...base, ...(input.default === undefined ? {} : { default: input.default }), multiselect: false, options: input.options };
    case 'IMAGE':
    case 'STREAMDIFFUSION_PIPELINE':
    case 'STREAMDIFFUSION_CONTROLNET':
    case 'STREAMDIFFUSION_IPADAPTER':
    case 'STREAMDIFFUSION_LORA':
      // Sockets: no widget options.
      return base;
  }
}

/** What `/object_info` should list for a node of the pack installed as `custom_nodes/<packName>`. */
export function expectedObjectInfo(node: NodeSpec, packName: string): ObjectInfoNode {
  const group = (optional: boolean) => Object.fromEntries(node.inputs.filter((input) => input.optional === optional).map((input) => [input.id, [input.type, optionsOf(input)] as [string, Record<string, unknown>]]));
  const required = group(false);
  const optional = group(true);
  const hasOptional = Object.keys(optional).length > 0;
  // ComfyUI gives every output node the prompt and its PNG info as hidden inputs.
  const hidden = node.outputNode === true ? { prompt: ['PROMPT'] as [string], extra_pnginfo: ['EXTRA_PNGINFO'] as [string] } : undefined;
  return {
    input: { required, ...(hasOptional ? { optional } : {}), ...(hidden === undefined ? {} : { hidden }) },
    input_order: { required: Object.keys(required), ...(hasOptional ? { optional: Object.keys(optional) } : {}), ...(hidden === undefined ? {} : { hidden: Object.keys(hidden) }) },
    output: node.outputs.map((output) => output.type),
    output_is_list: node.outputs.map(() => false),
    output_name: node.outputs.map((output) => output.displayName),
    output_tooltips: node.outputs.map((output) => output.tooltip),
    name: node.id,
    display_name: node.displayName,
    description: node.description,
    python_module: `custom_nodes.${packName}`,
    category: node.category,
    output_node: node.outputNode === true,
    deprecated: false,
    experimental: false,
    api_node: false,
  };
}
