/**
 * The node pack's nodes, made from the zod schemas of the pipeline and the wrappers (DESIGN §5: one
 * schema per parameter set is the single source): each schema field becomes a widget of the ComfyUI
 * type its JSON Schema says (number → FLOAT, integer → INT, enum → COMBO, boolean → BOOLEAN, text →
 * STRING; integer lists as "32,45" text, structured values as JSON text), with its range, default
 * and description. The Python classes, the expected `/object_info` entries and the schema hash that
 * the pack and the sidecar compare all come from this catalogue.
 */
import { DEVICE_REQUESTS, hotParametersShape, reloadParametersShape } from '@streamdiffusion/core';
import { controlNetEntrySchema, PREPROCESSOR_NAMES } from '@streamdiffusion/controlnet';
import { ipAdapterEntrySchema } from '@streamdiffusion/ip-adapter';
import { enginePlanOptionsSchema, loraEntrySchema } from '@streamdiffusion/tensorrt';
import { z } from 'zod';

/** The custom socket types handles travel in. */
export const SOCKET_TYPES = Object.freeze({
  pipeline: 'STREAMDIFFUSION_PIPELINE',
  controlnet: 'STREAMDIFFUSION_CONTROLNET',
  ipadapter: 'STREAMDIFFUSION_IPADAPTER',
  lora: 'STREAMDIFFUSION_LORA',
});

export const WIDGET_TYPES = Object.freeze(['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO'] as const);
export type WidgetType = (typeof WIDGET_TYPES)[number];
export type SocketType = 'IMAGE' | (typeof SOCKET_TYPES)[keyof typeof SOCKET_TYPES];

/** Whether an input of this type is a widget on the node (a value typed in), not a socket (a link). */
export const isWidget = (type: string): type is WidgetType => (WIDGET_TYPES as readonly string[]).includes(type);

/** How the runtime turns an input's value into what the sidecar takes. */
export type InputEncoding = 'plain' | 'int-list' | 'json' | 'optional-text';

export interface InputSpec {
  /** The input's id: the schema key it sets. */
  readonly id: string;
  readonly type: WidgetType | SocketType;
  readonly tooltip: string;
  readonly optional: boolean;
  readonly default?: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  readonly step?: number;
  readonly multiline?: boolean;
  readonly options?: readonly string[];
  readonly encoding: InputEncoding;
}

export interface OutputSpec {
  /** Unique among the node's inputs and outputs (ComfyUI checks): `<name>_out`. */
  readonly id: string;
  readonly type: SocketType | 'STRING';
  readonly displayName: string;
  readonly tooltip: string;
}

/** What a node does; the runtime module implements each. */
export type NodeAction = 'load' | 'controlnet' | 'ipadapter' | 'lora' | 'sample' | 'update' | 'build_engines';

export interface NodeSpec {
  readonly id: string;
  readonly displayName: string;
  readonly category: string;
  readonly description: string;
  readonly action: NodeAction;
  readonly inputs: readonly InputSpec[];
  readonly outputs: readonly OutputSpec[];
  /** Runs every time, never from ComfyUI's cache (the sampler: each queued prompt is a new frame). */
  readonly notIdempotent: boolean;
  /** An output node (ComfyUI runs it without anything downstream; its text shows on the node). */
  readonly outputNode?: boolean;
}

interface JsonProperty {
  readonly type?: string;
  readonly description?: string;
  readonly default?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly multipleOf?: number;
  readonly enum?: readonly unknown[];
  readonly items?: JsonProperty;
  readonly anyOf?: readonly JsonProperty[];
}

/** ComfyUI's INT widget is a 64-bit value in the UI; JavaScript's safe integers bound ours. */
const SAFE = Number.MAX_SAFE_INTEGER;

/** The JSON Schema properties of a zod object (input side: defaults included). */
function propertiesOf(schema: z.ZodType): Readonly<Record<string, JsonProperty>> {
  return (z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, JsonProperty> }).properties ?? {};
}

/** One schema field as a widget input. */
function widget(id: string, property: JsonProperty, overrides: Partial<InputSpec> = {}): InputSpec {
  const tooltip = property.description ?? id;
  const base = { id, tooltip, optional: false };
  let spec: InputSpec;
  if (property.enum !== undefined) {
    spec = { ...base, type: 'COMBO', options: property.enum.map(String), ...(typeof property.default === 'string' || typeof property.default === 'number' ? { default: String(property.default) } : {}), encoding: 'plain' };
  } else if (property.type === 'boolean') {
    spec = { ...base, type: 'BOOLEAN', default: property.default === true, encoding: 'plain' };
  } else if (property.type === 'integer') {
    spec = { ...base, type: 'INT', default: Number(property.default ?? 0), min: Math.max(property.minimum ?? -SAFE, -SAFE), max: Math.min(property.maximum ?? SAFE, SAFE), step: property.multipleOf ?? 1, encoding: 'plain' };
  } else if (property.type === 'number') {
    spec = { ...base, type: 'FLOAT', default: Number(property.default ?? 0), min: property.minimum ?? -1e9, max: property.maximum ?? 1e9, step: 0.01, encoding: 'plain' };
  } else if (property.type === 'string') {
    spec = { ...base, type: 'STRING', default: typeof property.default === 'string' ? property.default : '', encoding: 'plain' };
  } else if (property.type === 'array' && (property.items?.type === 'integer' || property.items?.type === 'number')) {
    const fallback = Array.isArray(property.default) ? (property.default as unknown[]).join(',') : '';
    spec = { ...base, type: 'STRING', tooltip: `${tooltip} (comma-separated)`, default: fallback, encoding: 'int-list' };
  } else {
    // Structured values (prompt blending, preprocessor parameters): JSON text; empty leaves it unset.
    const fallback = property.default === undefined ? '' : JSON.stringify(property.default);
    spec = { ...base, type: 'STRING', tooltip: `${tooltip} (JSON; empty: not set)`, default: fallback, optional: true, encoding: 'json' };
  }
  return { ...spec, ...overrides };
}

/** Widgets for the fields of `properties`, in order, leaving out `omit`. */
function widgets(properties: Readonly<Record<string, JsonProperty>>, omit: readonly string[], overrides: Readonly<Record<string, Partial<InputSpec>>> = {}): InputSpec[] {
  return Object.entries(properties)
    .filter(([key]) => !omit.includes(key))
    .map(([key, property]) => widget(key, property, overrides[key]));
}

const CATEGORY = 'StreamDiffusion';
const snake = (key: string): string => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

/** The engine plan's options that are Build engines widgets (the batch overrides stay with the CLI), by their plan keys. */
export const PLAN_WIDGET_KEYS: readonly string[] = Object.keys(enginePlanOptionsSchema.shape).filter((key) => !key.endsWith('Batch'));

/** The plan's camelCase keys in a text (a key, a tooltip, an error message) as the node's snake_case widget names: minResolution → min_resolution. */
export const planNamesForNodes = (text: string): string => text.replace(new RegExp(`\\b(?:${PLAN_WIDGET_KEYS.join('|')})\\b`, 'g'), snake);
const MULTILINE = { prompt: { multiline: true }, negative_prompt: { multiline: true } } as const;

const pipelineInput = (tooltip: string): InputSpec => ({ id: 'pipeline', type: SOCKET_TYPES.pipeline, tooltip, optional: false, encoding: 'plain' });
const loraInput = (tooltip: string): InputSpec => ({ id: 'lora', type: SOCKET_TYPES.lora, tooltip, optional: true, encoding: 'plain' });
const pipelineOutput: OutputSpec = { id: 'pipeline_out', type: SOCKET_TYPES.pipeline, displayName: 'pipeline', tooltip: 'The pipeline handle: feed it to StreamDiffusion Sampler or Update parameters.' };

/** Every node of the pack, in menu order. */
export function nodeCatalogue(): readonly NodeSpec[] {
  const hot = propertiesOf(z.object(hotParametersShape));
  const reload = propertiesOf(z.object(reloadParametersShape));
  const controlnet = propertiesOf(controlNetEntrySchema);
  const ipadapter = propertiesOf(ipAdapterEntrySchema('paths'));
  const lora = propertiesOf(loraEntrySchema);
  const plan = propertiesOf(enginePlanOptionsSchema);
  return [
    {
      id: 'StreamDiffusionLoadPipeline',
      displayName: 'Load StreamDiffusion pipeline',
      category: CATEGORY,
      description: 'Loads a model folder (made by the export tool) into the StreamDiffusion sidecar and gives a pipeline handle. ComfyUI caches it: re-queued prompts reuse the loaded pipeline.',
      action: 'load',
      inputs: [
        { id: 'model', type: 'STRING', tooltip: 'The model folder (ONNX layout: model_index.json, unet/, vae_*/, text_encoder/, …), an absolute path or one relative to ComfyUI’s models/streamdiffusion folder.', optional: false, default: '', encoding: 'plain' },
        { id: 'device', type: 'COMBO', tooltip: 'Where the models run: auto picks the best this machine has.', optional: false, options: [...DEVICE_REQUESTS], default: 'auto', encoding: 'plain' },
        ...widgets(reload, []),
        ...widgets(hot, [], MULTILINE),
        { id: 'controlnet', type: SOCKET_TYPES.controlnet, tooltip: 'ControlNets (a chain of StreamDiffusion ControlNet nodes).', optional: true, encoding: 'plain' },
        { id: 'ipadapter', type: SOCKET_TYPES.ipadapter, tooltip: 'An IP-Adapter (the StreamDiffusion IP-Adapter node).', optional: true, encoding: 'plain' },
        loraInput('LoRAs merged into the model’s weights (a chain of StreamDiffusion LoRA nodes).'),
      ],
      outputs: [pipelineOutput],
      notIdempotent: false,
    },
    {
      id: 'StreamDiffusionControlNet',
      displayName: 'StreamDiffusion ControlNet',
      category: CATEGORY,
      description: 'Adds a ControlNet to a chain (connect the previous one to "controlnet"); the chain goes to Load StreamDiffusion pipeline.',
      action: 'controlnet',
      inputs: [
        ...widgets(controlnet, [], { preprocessor: { type: 'COMBO', options: [...PREPROCESSOR_NAMES], default: 'passthrough' }, preprocessor_model: { optional: true, encoding: 'optional-text', tooltip: `${controlnet.preprocessor_model?.description ?? ''} (empty: none)` } }),
        { id: 'controlnet', type: SOCKET_TYPES.controlnet, tooltip: 'ControlNets before this one in the chain.', optional: true, encoding: 'plain' },
      ],
      outputs: [{ id: 'controlnet_out', type: SOCKET_TYPES.controlnet, displayName: 'controlnet', tooltip: 'The chain with this ControlNet added.' }],
      notIdempotent: false,
    },
    {
      id: 'StreamDiffusionIPAdapter',
      displayName: 'StreamDiffusion IP-Adapter',
      category: CATEGORY,
      description: 'An IP-Adapter with its style image (an IMAGE input, or a file path); goes to Load StreamDiffusion pipeline.',
      action: 'ipadapter',
      inputs: [
        ...widgets(ipadapter, ['type', 'style_images', 'composition_scale'], {
          image_encoder_path: { optional: true, encoding: 'optional-text', tooltip: `${ipadapter.image_encoder_path?.description ?? ''} (empty: the default)` },
          style_image: { optional: true, encoding: 'optional-text', tooltip: 'The style image as a file path (empty: use the style_image_pixels input).' },
        }),
        { id: 'style_image_pixels', type: 'IMAGE', tooltip: 'The style image from another node (its first image); used instead of the style_image path.', optional: true, encoding: 'plain' },
      ],
      outputs: [{ id: 'ipadapter_out', type: SOCKET_TYPES.ipadapter, displayName: 'ipadapter', tooltip: 'The IP-Adapter, for Load StreamDiffusion pipeline.' }],
      notIdempotent: false,
    },
    {
      id: 'StreamDiffusionLoRA',
      displayName: 'StreamDiffusion LoRA',
      category: CATEGORY,
      description: 'Adds a LoRA (.safetensors, kohya or diffusers/PEFT names) to a chain; the chain goes to Load StreamDiffusion pipeline, or to Update parameters to change LoRAs while streaming.',
      action: 'lora',
      inputs: [...widgets(lora, [], { path: { tooltip: `${lora.path?.description ?? ''} An absolute path, or a name in ComfyUI’s models/loras folder.` } }), loraInput('LoRAs before this one in the chain.')],
      outputs: [{ id: 'lora_out', type: SOCKET_TYPES.lora, displayName: 'lora', tooltip: 'The chain with this LoRA added.' }],
      notIdempotent: false,
    },
    {
      id: 'StreamDiffusionUpdateParameters',
      displayName: 'StreamDiffusion update parameters',
      category: CATEGORY,
      description: 'Changes the hot parameters of a pipeline (prompt, guidance, t_index_list, seed, …) without reloading it; the sampler applies them between two frames.',
      action: 'update',
      inputs: [pipelineInput('The pipeline to change.'), ...widgets(hot, [], MULTILINE), loraInput('LoRAs instead of the load node’s (hot: merged again in memory, no reload of the pipeline); unconnected: unchanged.')],
      outputs: [pipelineOutput],
      notIdempotent: false,
    },
    {
      id: 'StreamDiffusionSampler',
      displayName: 'StreamDiffusion Sampler',
      category: CATEGORY,
      description: 'Runs img2img on every image of the batch, in order, as consecutive frames of the stream (never cached: each queued prompt is the next frame).',
      action: 'sample',
      inputs: [pipelineInput('The pipeline to run.'), { id: 'image', type: 'IMAGE', tooltip: 'The frames (a batch is consecutive frames).', optional: false, encoding: 'plain' }],
      outputs: [{ id: 'image_out', type: 'IMAGE', displayName: 'IMAGE', tooltip: 'The transformed frames, at the pipeline’s width and height.' }],
      notIdempotent: true,
    },
    {
      id: 'StreamDiffusionBuildEngines',
      displayName: 'StreamDiffusion build TensorRT engines',
      category: CATEGORY,
      description:
        'Builds the TensorRT engines a pipeline needs (UNet, VAE encoder/decoder, its ControlNets) with trtexec into the engine store, the same plan and build as `streamdiffusion build-engines`; dry_run shows the plan and the trtexec commands without TensorRT. Progress goes to the ComfyUI console. Needs TensorRT (trtexec) and an NVIDIA GPU.',
      action: 'build_engines',
      inputs: [
        pipelineInput('The pipeline whose engines to build (its model, size, t_index_list, frame_buffer_size, cfg_type, ControlNets and IP-Adapter make the plan).'),
        // The plan's fields under the snake_case names of the rest of the pack (and the CLI's flags); batch overrides stay with the CLI.
        ...Object.entries(plan)
          .filter(([key]) => PLAN_WIDGET_KEYS.includes(key))
          .map(([key, property]) => widget(planNamesForNodes(key), { ...property, ...(property.description === undefined ? {} : { description: planNamesForNodes(property.description) }) })),
        { id: 'refit', type: 'BOOLEAN', tooltip: 'Refittable engines: new weights (a LoRA merge) can be put into them without a rebuild.', optional: false, default: false, encoding: 'plain' },
        { id: 'dry_run', type: 'BOOLEAN', tooltip: 'Show the plan and the trtexec commands; build nothing (needs no TensorRT).', optional: false, default: false, encoding: 'plain' },
        { id: 'trtexec', type: 'STRING', tooltip: 'The trtexec to run (empty: trtexec on PATH, or in TensorRT’s usual folders).', optional: true, default: '', encoding: 'optional-text' },
        { id: 'store', type: 'STRING', tooltip: 'The engine store folder (empty: $STREAMDIFFUSION_ENGINE_DIR, else ~/.cache/streamdiffusion/engines, as the CLI).', optional: true, default: '', encoding: 'optional-text' },
      ],
      outputs: [{ id: 'report_out', type: 'STRING', displayName: 'report', tooltip: 'What was built (or, dry, planned), as text.' }],
      notIdempotent: false,
      outputNode: true,
    },
  ];
}
