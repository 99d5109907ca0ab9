/**
 * The example workflows (workflows/*.api.json, hand-written in ComfyUI's API format) use only
 * inputs our nodes have, with values their widgets accept; the editor-format copies
 * (workflows/*.json) are what toUiWorkflow makes of them (update with `-u` after a reviewed change),
 * and reading an editor copy back the way ComfyUI's editor does (widget values in widget order,
 * links by slot) gives the API workflow again. The real-ComfyUI tests run the API workflows.
 */
import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { nodeCatalogue } from '../catalogue/node-catalogue.js';
import { expectedObjectInfo } from '../catalogue/object-info.js';
import { PACK_NAME } from '../generator/generate-pack.js';
import { apiWorkflowSchema, COMFY_CORE_NODES, inputSlots, toUiWorkflow, type ApiWorkflow, type NodeInfo, type UiWorkflow } from './ui-workflow.js';

const folder = new URL('../../workflows/', import.meta.url);
const infos: Record<string, NodeInfo> = { ...COMFY_CORE_NODES, ...Object.fromEntries(nodeCatalogue().map((node) => [node.id, expectedObjectInfo(node, PACK_NAME)])) };
const files = (await readdir(folder)).filter((name) => name.endsWith('.api.json')).sort();
const readApi = async (file: string): Promise<ApiWorkflow> => apiWorkflowSchema.parse(JSON.parse(await readFile(new URL(file, folder), 'utf8')));

/** The API form of an editor workflow, read independently of toUiWorkflow: walk each node's inputs in widget order. */
function fromUi(ui: UiWorkflow): Record<string, { class_type: string; inputs: Record<string, unknown> }> {
  const api: Record<string, { class_type: string; inputs: Record<string, unknown> }> = {};
  for (const node of ui.nodes) {
    const values = [...node.widgets_values];
    const inputs: Record<string, unknown> = {};
    for (const slot of inputSlots(infos[node.type]!)) {
      if (slot.widget) {
        inputs[slot.name] = values.shift();
        values.splice(0, slot.extra.length);
        continue;
      }
      const socket = node.inputs.find((input) => input.name === slot.name);
      const link = ui.links.find((entry) => entry[0] === socket?.link);
      if (link !== undefined) {
        expect(link.slice(3, 5), `link ${link[0]} ends at ${node.id}:${slot.name}`).toEqual([node.id, node.inputs.indexOf(socket!)]);
        expect(ui.nodes.find((from) => from.id === link[1])!.outputs[link[2]]!.links, `link ${link[0]} leaves its origin`).toContain(link[0]);
        inputs[slot.name] = [String(link[1]), link[2]];
      }
    }
    expect(values, `node ${node.id}: every widget value is used`).toEqual([]);
    api[String(node.id)] = { class_type: node.type, inputs };
  }
  return api;
}

describe('the example workflows', () => {
  it('are there: img2img with live parameters, and ControlNet with an IP-Adapter', () => {
    expect(files).toEqual(['controlnet-ipadapter.api.json', 'img2img.api.json']);
  });

  for (const file of files) {
    describe(file, () => {
      it('gives every widget of our nodes a value its widget accepts, and nothing it does not have', async () => {
        const api = await readApi(file);
        for (const [id, node] of Object.entries(api)) {
          const info = infos[node.class_type];
          expect(info, `node ${id}: ${node.class_type}`).toBeDefined();
          const slots = inputSlots(info!);
          expect(Object.keys(node.inputs).filter((name) => !slots.some((slot) => slot.name === name)), `node ${id}: unknown inputs`).toEqual([]);
          for (const slot of slots.filter((entry) => entry.widget && node.class_type.startsWith('StreamDiffusion'))) {
            const value = node.inputs[slot.name];
            const [, options] = (slot.optional ? info!.input.optional : info!.input.required)![slot.name]! as [string, Record<string, unknown>];
            const where = `node ${id} ${slot.name} = ${JSON.stringify(value)}`;
            if (slot.type === 'INT' || slot.type === 'FLOAT') {
              expect(typeof value, where).toBe('number');
              expect(value as number, where).toBeGreaterThanOrEqual(options.min as number);
              expect(value as number, where).toBeLessThanOrEqual(options.max as number);
              if (slot.type === 'INT') expect(Number.isInteger(value), where).toBe(true);
            } else if (slot.type === 'COMBO') expect(options.options, where).toContain(value);
            else if (slot.type === 'BOOLEAN') expect(typeof value, where).toBe('boolean');
            else expect(typeof value, where).toBe('string');
          }
        }
      });

      it('has an editor copy that is toUiWorkflow of it, and reads back to it', async () => {
        const api = await readApi(file);
        const ui = toUiWorkflow(api, infos);
        await expect(`${JSON.stringify(ui, null, 2)}\n`).toMatchFileSnapshot(`../../workflows/${file.replace('.api.json', '.json')}`);
        const withoutTitles = Object.fromEntries(Object.entries(api).map(([id, node]) => [id, { class_type: node.class_type, inputs: node.inputs }]));
        expect(fromUi(ui)).toEqual(withoutTitles);
      });
    });
  }

  it('refuses a workflow that does not fit the nodes, naming the node and the input', () => {
    const base: ApiWorkflow = { '1': { class_type: 'LoadImage', inputs: { image: 'frame.png' } }, '2': { class_type: 'StreamDiffusionSampler', inputs: { pipeline: ['9', 0], image: ['1', 0] } } };
    expect(() => toUiWorkflow(base, infos)).toThrow('workflow node 2: links to node 9, which is not in the workflow');
    expect(() => toUiWorkflow({ '1': base['1']!, '2': { class_type: 'StreamDiffusionSampler', inputs: { image: ['1', 0] } } }, infos)).toThrow(
      'workflow node 2 (StreamDiffusionSampler): the required socket pipeline is not connected',
    );
    expect(() => toUiWorkflow({ '1': { class_type: 'LoadImage', inputs: { image: 'frame.png', strength: 2 } } }, infos)).toThrow('workflow node 1 (LoadImage): no input named strength');
    expect(() => toUiWorkflow({ '1': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } }, infos)).toThrow('workflow: the links loop through node 1');
    expect(() => toUiWorkflow({ '1': { class_type: 'KSampler', inputs: {} } }, infos)).toThrow('workflow node 1: no /object_info entry for KSampler');
  });
});
