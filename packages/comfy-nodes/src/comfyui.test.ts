/**
 * The pack in a real ComfyUI 0.3.64 (COMFYUI_DIR; started on CPU by test-support/comfyui, Debian's
 * python3-torch plus import stubs, see its README): ComfyUI's own V3 code serialises our generated
 * classes to exactly the `/object_info` entries the generator expects, and a prompt LoadImage →
 * Load pipeline → Sampler → SaveImage runs through `POST /prompt` with empty node_errors and
 * writes the transformed image. Without COMFYUI_DIR these tests are skipped, and say why.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readImage, writeImage } from '@streamdiffusion/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startComfyUI, runPrompt, type RunningComfyUI } from '../test-support/comfyui/start-comfyui.mjs';
import { generatePack, PACK_NAME } from './generator/generate-pack.js';
import { linkSidecarModules } from './generator/install-pack.js';

const COMFYUI_DIR = process.env.COMFYUI_DIR;
const MODEL = fileURLToPath(new URL('../../../fixtures/models/tiny-sd-turbo', import.meta.url));
if (COMFYUI_DIR === undefined) console.warn('comfyui.test.ts: skipped — set COMFYUI_DIR to a ComfyUI 0.3.64 checkout (see test-support/comfyui/README.md)');

/** The load node's inputs as an API-format prompt gives them (every widget). */
const loadInputs = { model: MODEL, device: 'cpu', width: 64, height: 64, frame_buffer_size: 1, cfg_type: 'none', do_add_noise: true, use_denoising_batch: true, prompt: 'a lighthouse', negative_prompt: '', t_index_list: '20,40', num_inference_steps: 50, guidance_scale: 1.2, delta: 1, seed: 2, enable_similar_image_filter: false, similar_image_filter_threshold: 0.98, similar_image_filter_max_skip_frame: 10, normalize_prompt_weights: true, normalize_seed_weights: true, prompt_blending: '', seed_blending: '' };

describe.skipIf(COMFYUI_DIR === undefined)('the node pack in a real ComfyUI 0.3.64 (CPU)', () => {
  let nodes: string;
  let input: string;
  let comfy: RunningComfyUI;
  beforeAll(async () => {
    nodes = await mkdtemp(join(tmpdir(), 'sd-comfyui-nodes-'));
    input = await mkdtemp(join(tmpdir(), 'sd-comfyui-input-'));
    await generatePack(join(nodes, PACK_NAME));
    await linkSidecarModules(join(nodes, PACK_NAME));
    await writeImage(join(input, 'frame.png'), { data: new Uint8Array(96 * 80 * 3).map((_, index) => (index * 7) % 256), width: 96, height: 80, channels: 3 });
    process.env.STREAMDIFFUSION_NODE = process.execPath;
    comfy = await startComfyUI({ comfyDir: COMFYUI_DIR, customNodesDir: nodes, inputDir: input });
  });
  afterAll(async () => {
    await comfy?.stop();
    await rm(nodes, { recursive: true, force: true });
    await rm(input, { recursive: true, force: true });
  });

  it('serialises every generated node to the /object_info entry the generator expects', async () => {
    const info = (await (await fetch(`${comfy.url}/object_info`)).json()) as Record<string, unknown>;
    const expected = JSON.parse(await readFile(join(nodes, PACK_NAME, 'object_info.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(expected)).toHaveLength(5);
    for (const [id, entry] of Object.entries(expected)) expect(info[id], id).toEqual(entry);
  });

  it('runs LoadImage → Load pipeline → Sampler → SaveImage with empty node_errors and writes the 64×64 output', async () => {
    const run = await runPrompt(comfy.url, {
      '1': { class_type: 'LoadImage', inputs: { image: 'frame.png' } },
      '2': { class_type: 'StreamDiffusionLoadPipeline', inputs: loadInputs },
      '3': { class_type: 'StreamDiffusionSampler', inputs: { pipeline: ['2', 0], image: ['1', 0] } },
      '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'streamdiffusion' } },
    }, { timeoutMs: 60_000 });
    expect(run.node_errors).toEqual({});
    expect(run.history?.status.status_str, JSON.stringify(run.history?.status.messages)).toBe('success');
    const saved = run.history!.outputs['4']!.images![0]!;
    const image = await readImage(join(comfy.outputDir, saved.subfolder, saved.filename));
    expect([image.width, image.height]).toEqual([64, 64]);
  });
});
