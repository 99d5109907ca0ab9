/**
 * The catalogue follows the schemas (a field's range, default and choices are the schema's), every
 * node's expected `/object_info` entry passes our zod schema of ComfyUI's node format, and that
 * schema rejects entries ComfyUI's frontend could not use.
 */
import { hotParametersShape, reloadParametersShape } from '@streamdiffusion/core';
import { PREPROCESSOR_NAMES } from '@streamdiffusion/controlnet';
import { WEIGHT_TYPES } from '@streamdiffusion/ip-adapter';
import { describe, expect, it } from 'vitest';
import { nodeCatalogue, SOCKET_TYPES, type NodeSpec } from './node-catalogue.js';
import { expectedObjectInfo, objectInfoNodeSchema } from './object-info.js';
import { schemaHash } from './schema-hash.js';

const catalogue = nodeCatalogue();
const node = (id: string): NodeSpec => catalogue.find((item) => item.id === id)!;
const input = (nodeId: string, inputId: string) => node(nodeId).inputs.find((item) => item.id === inputId)!;

describe('the node catalogue', () => {
  it('has the pack’s nodes, with handles in custom socket types and only the sampler never cached', () => {
    expect(catalogue.map((item) => item.id)).toEqual(['StreamDiffusionLoadPipeline', 'StreamDiffusionControlNet', 'StreamDiffusionIPAdapter', 'StreamDiffusionLoRA', 'StreamDiffusionUpdateParameters', 'StreamDiffusionSampler', 'StreamDiffusionBuildEngines']);
    expect(node('StreamDiffusionLoadPipeline').outputs.map((output) => output.type)).toEqual([SOCKET_TYPES.pipeline]);
    expect(input('StreamDiffusionControlNet', 'controlnet')).toMatchObject({ type: SOCKET_TYPES.controlnet, optional: true });
    // LoRAs chain, and reach the load node (with the pipeline) and the update node (hot).
    for (const id of ['StreamDiffusionLoRA', 'StreamDiffusionLoadPipeline', 'StreamDiffusionUpdateParameters']) expect(input(id, 'lora'), id).toMatchObject({ type: SOCKET_TYPES.lora, optional: true });
    expect(input('StreamDiffusionLoRA', 'scale')).toMatchObject({ type: 'FLOAT', min: -10, max: 10, default: 1 });
    expect(catalogue.filter((item) => item.notIdempotent).map((item) => item.id)).toEqual(['StreamDiffusionSampler']);
    // ComfyUI refuses a schema whose input and output ids collide.
    for (const item of catalogue) {
      const ids = [...item.inputs.map((entry) => entry.id), ...item.outputs.map((entry) => entry.id)];
      expect(new Set(ids).size, item.id).toBe(ids.length);
    }
  });

  it('makes the load node’s widgets from the parameter schema: every key, with its range, default and choices', () => {
    const ids = node('StreamDiffusionLoadPipeline').inputs.map((item) => item.id);
    expect(ids).toEqual(expect.arrayContaining([...Object.keys(reloadParametersShape), ...Object.keys(hotParametersShape)]));
    expect(input('StreamDiffusionLoadPipeline', 'guidance_scale')).toMatchObject({ type: 'FLOAT', min: 0, max: 100, default: 1.2 });
    expect(input('StreamDiffusionLoadPipeline', 'width')).toMatchObject({ type: 'INT', min: 8, max: 8192, default: 512 });
    expect(input('StreamDiffusionLoadPipeline', 'cfg_type')).toMatchObject({ type: 'COMBO', options: ['none', 'self', 'initialize', 'full'], default: 'self' });
    expect(input('StreamDiffusionLoadPipeline', 't_index_list')).toMatchObject({ type: 'STRING', default: '32,45', encoding: 'int-list' });
    expect(input('StreamDiffusionLoadPipeline', 'prompt_blending')).toMatchObject({ type: 'STRING', optional: true, encoding: 'json' });
    expect(input('StreamDiffusionLoadPipeline', 'prompt')).toMatchObject({ multiline: true });
    // The update node takes the hot parameters only (and LoRAs, merged in memory).
    expect(node('StreamDiffusionUpdateParameters').inputs.map((item) => item.id)).toEqual(['pipeline', ...Object.keys(hotParametersShape), 'lora']);
  });

  it('makes the Build engines node from the engine plan’s options: an output node with a text output, taking the pipeline', () => {
    const build = node('StreamDiffusionBuildEngines');
    expect(build).toMatchObject({ outputNode: true, action: 'build_engines', outputs: [{ type: 'STRING' }] });
    expect(build.inputs.map((item) => item.id)).toEqual(['pipeline', 'resolution', 'min_resolution', 'max_resolution', 'precision', 'refit', 'dry_run', 'trtexec', 'store']);
    expect(input('StreamDiffusionBuildEngines', 'max_resolution')).toMatchObject({ type: 'INT', min: 64, max: 4096, step: 64, default: 1024 });
    expect(input('StreamDiffusionBuildEngines', 'max_resolution').tooltip).toContain('at least min_resolution');
    expect(input('StreamDiffusionBuildEngines', 'precision')).toMatchObject({ type: 'COMBO', options: ['fp16', 'fp32'], default: 'fp16' });
    expect(catalogue.filter((item) => item.outputNode === true).map((item) => item.id)).toEqual(['StreamDiffusionBuildEngines']);
    // ComfyUI hands an output node the prompt as hidden inputs; /object_info lists them.
    expect(expectedObjectInfo(build, 'pack')).toMatchObject({ output_node: true, input_order: { hidden: ['prompt', 'extra_pnginfo'] } });
  });

  it('makes the wrapper nodes’ widgets from the wrappers’ entry schemas', () => {
    expect(input('StreamDiffusionControlNet', 'preprocessor')).toMatchObject({ type: 'COMBO', options: [...PREPROCESSOR_NAMES] });
    expect(input('StreamDiffusionControlNet', 'conditioning_scale')).toMatchObject({ type: 'FLOAT', min: 0, max: 10, default: 1 });
    expect(input('StreamDiffusionIPAdapter', 'weight_type')).toMatchObject({ type: 'COMBO', options: [...WEIGHT_TYPES], default: 'linear' });
    expect(input('StreamDiffusionIPAdapter', 'style_image_pixels')).toMatchObject({ type: 'IMAGE', optional: true });
  });

  it('has a hash that changes with the catalogue', () => {
    const changed = catalogue.map((item) => (item.id === 'StreamDiffusionSampler' ? { ...item, description: `${item.description}!` } : item));
    expect(schemaHash(catalogue)).toMatch(/^[0-9a-f]{16}$/);
    expect(schemaHash(changed)).not.toBe(schemaHash(catalogue));
  });
});

describe('ComfyUI’s /object_info node format (our zod schema)', () => {
  it('accepts the entry of every node', () => {
    for (const item of catalogue) {
      const parsed = objectInfoNodeSchema.safeParse(expectedObjectInfo(item, 'streamdiffusion_nodes'));
      expect(parsed.success, `${item.id}: ${parsed.success ? '' : JSON.stringify(parsed.error.issues)}`).toBe(true);
    }
  });

  it('rejects entries the frontend could not use', () => {
    const good = expectedObjectInfo(node('StreamDiffusionLoadPipeline'), 'streamdiffusion_nodes');
    const broken = (change: (entry: typeof good) => void): string[] => {
      const entry = structuredClone(good);
      change(entry);
      const parsed = objectInfoNodeSchema.safeParse(entry);
      return parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    };
    expect(broken(() => undefined)).toEqual([]);
    expect(broken((entry) => ((entry.input.required.guidance_scale![1] as { default: number }).default = 500))).toEqual(['input.required.guidance_scale: default 500 outside [0, 100]']);
    expect(broken((entry) => ((entry.input.required.cfg_type![1] as { default: string }).default = 'sometimes'))).toEqual(['input.required.cfg_type: default sometimes is not an option']);
    expect(broken((entry) => entry.input_order.required.reverse())).toEqual([expect.stringMatching(/^input_order.required: must list the required inputs in order/)]);
    expect(broken((entry) => entry.output_name.push('extra'))).toEqual(['output: output lists differ in length (1, 1, 2, 1)']);
    expect(broken((entry) => delete (entry.input.required.width![1] as { step?: number }).step)).toEqual([expect.stringMatching(/^input.required.width: INT options: step/)]);
    expect(broken((entry) => Object.assign(entry, { surprise: true }))).toEqual([expect.stringMatching(/Unrecognized key/)]);
  });
});
