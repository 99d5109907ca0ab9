/**
 * The pack in a real ComfyUI 0.3.64 (COMFYUI_DIR; started on CPU by test-support/comfyui, Debian's
 * python3-torch plus import stubs, see its README). Without COMFYUI_DIR these tests are skipped,
 * and say why.
 *
 * - ComfyUI's own V3 code serialises our generated classes to exactly the `/object_info` entries
 *   the generator expects, and lists the pack's example workflows as templates.
 * - The example workflows (workflows/*.api.json, with the model names pointed at the tiny fixtures
 *   in ComfyUI's models/streamdiffusion folder, 64×64 and device cpu) run through `POST /prompt`
 *   with empty node_errors, and each output image equals what the library itself makes of the same
 *   frames (within one level: ComfyUI's SaveImage truncates 255·x).
 * - Re-queueing the same prompt (the per-frame flow) gives the stream's next frames; a changed
 *   parameter on the update node reaches the running pipeline without a reload.
 * - The Build engines node (an output node) shows the pipeline's engine plan as text; without
 *   TensorRT it fails naming TensorRT's install guide.
 * - A bad value gives a node error naming the field and the value; a sidecar killed in the middle
 *   of a prompt fails that prompt with a node error saying so, and the next prompt works; when
 *   ComfyUI is killed, its sidecar exits too.
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configToStreamDiffusionOptions, createRuntime, createStreamDiffusion, loadModel, readImage, streamDiffusionConfigSchema, writeImage, type AnyUNetWrapperV1, type RgbImage } from '@streamdiffusion/core';
import { createControlNet } from '@streamdiffusion/controlnet';
import { createIpAdapter } from '@streamdiffusion/ip-adapter';
import { createHotLora } from '@streamdiffusion/tensorrt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startComfyUI, runPrompt, type PromptRun, type RunningComfyUI } from '../test-support/comfyui/start-comfyui.mjs';
import { generatePack, PACK_NAME } from './generator/generate-pack.js';
import { linkSidecarModules } from './generator/install-pack.js';
import { apiWorkflowSchema, COMFY_CORE_NODES, type ApiWorkflow } from './workflows/ui-workflow.js';

const COMFYUI_DIR = process.env.COMFYUI_DIR;
if (COMFYUI_DIR === undefined) console.warn('comfyui.test.ts: skipped — set COMFYUI_DIR to a ComfyUI 0.3.64 checkout (see test-support/comfyui/README.md)');

const fixture = (path: string): string => fileURLToPath(new URL(`../../../fixtures/${path}`, import.meta.url));
const workflow = async (name: string): Promise<ApiWorkflow> => apiWorkflowSchema.parse(JSON.parse(await readFile(new URL(`../workflows/${name}.api.json`, import.meta.url), 'utf8')));

/** The example frame (96×80, resized by the pipeline) and style image. */
const FRAME: RgbImage = { data: new Uint8Array(96 * 80 * 3).map((_, index) => (index * 7) % 256), width: 96, height: 80, channels: 3 };
const STYLE: RgbImage = { data: new Uint8Array(48 * 48 * 3).map((_, index) => (index % 3 === 0 ? (index >> 5) % 256 : (index * 13) % 256)), width: 48, height: 48, channels: 3 };

/** A workflow node's widget values as the schemas take them (what the runtime's decode_inputs does, written again here). */
function schemaValues(inputs: Readonly<Record<string, unknown>>, drop: readonly string[] = []): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(inputs)) {
    if (Array.isArray(value) || drop.includes(key) || value === '') continue;
    if (key === 't_index_list') values[key] = String(value).split(',').map(Number);
    else if (key === 'preprocessor_params' || key.endsWith('_blending')) values[key] = JSON.parse(String(value));
    else values[key] = value;
  }
  return values;
}

/** What the library itself makes of these frames: a fresh pipeline, `update(hot)` before the frames the map names. */
async function libraryFrames(
  options: {
    readonly model: string;
    readonly parameters: Record<string, unknown>;
    readonly controlnets?: unknown[];
    readonly ipadapters?: unknown[];
    readonly loras?: { path: string; scale: number }[];
    readonly updates?: ReadonlyMap<number, Record<string, unknown>>;
  },
  frames: readonly RgbImage[],
): Promise<RgbImage[]> {
  const runtime = await createRuntime({ device: 'cpu' });
  try {
    const model = await loadModel({ runtime, folder: options.model });
    if (options.loras !== undefined) await (await createHotLora(model)).apply(options.loras);
    const config = streamDiffusionConfigSchema.parse({ ...options.parameters, model_id: options.model });
    const wrappers: AnyUNetWrapperV1[] = [];
    if (options.controlnets !== undefined || model.capabilities.controlNet !== null) wrappers.push(createControlNet({ controlnets: (options.controlnets ?? []) as never }));
    if (options.ipadapters !== undefined) wrappers.push(await createIpAdapter({ ipadapters: options.ipadapters as never }));
    const stream = await createStreamDiffusion({ model, wrappers, ...configToStreamDiffusionOptions(config) });
    const out: RgbImage[] = [];
    for (const [index, frame] of frames.entries()) {
      const hot = options.updates?.get(index);
      if (hot !== undefined) await stream.update(hot);
      out.push((await stream.img2img(frame)).images[0]!);
    }
    await stream.dispose();
    await model.dispose();
    return out;
  } finally {
    await runtime.dispose();
  }
}

const maxDifference = (a: RgbImage, b: RgbImage): number => {
  expect([a.width, a.height]).toEqual([b.width, b.height]);
  return a.data.reduce((most, value, index) => Math.max(most, Math.abs(value - b.data[index]!)), 0);
};

/** The message of the prompt's execution error (node id and text), or undefined when it succeeded. */
function executionError(run: PromptRun): { node_id: string; exception_type: string; exception_message: string } | undefined {
  const message = run.history?.status.messages.find((entry) => Array.isArray(entry) && entry[0] === 'execution_error') as [string, { node_id: string; exception_type: string; exception_message: string }] | undefined;
  return message?.[1];
}

/** The nodes ComfyUI served from its cache in a prompt (its `execution_cached` message), sorted. */
const cachedNodes = (run: PromptRun): string[] =>
  (run.history!.status.messages.find((entry) => Array.isArray(entry) && entry[0] === 'execution_cached') as [string, { nodes: string[] }])[1].nodes.slice().sort();

/** The processes whose parent is `pid`, with their command lines and state (from /proc). */
async function childrenOf(pid: number): Promise<{ pid: number; state: string; command: string; cpuTicks: number }[]> {
  const children = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== pid) continue;
      const command = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      children.push({ pid: Number(entry), state: fields[0]!, command, cpuTicks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

async function sidecarOf(comfy: RunningComfyUI): Promise<{ pid: number; cpuTicks: number } | undefined> {
  return (await childrenOf(comfy.process.pid!)).find((child) => child.command.includes('sidecar.mjs'));
}

/** Whether a process still runs: not gone, and not a zombie whose threads have all exited (only then can its parent reap it). */
const alive = async (pid: number): Promise<boolean> => {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z' || (await readdir(`/proc/${pid}/task`)).length > 1;
  } catch {
    return false;
  }
};

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A pack, input images and ComfyUI's models/streamdiffusion folder with the example workflows' model names pointing at fixtures. */
async function startWithPack(): Promise<{ comfy: RunningComfyUI; pack: string; cleanup: () => Promise<void> }> {
  const nodes = await mkdtemp(join(tmpdir(), 'sd-comfyui-nodes-'));
  const input = await mkdtemp(join(tmpdir(), 'sd-comfyui-input-'));
  await generatePack(join(nodes, PACK_NAME));
  await linkSidecarModules(join(nodes, PACK_NAME));
  await writeImage(join(input, 'frame.png'), FRAME);
  await writeImage(join(input, 'style.png'), STYLE);
  process.env.STREAMDIFFUSION_NODE = process.execPath;
  const comfy = await startComfyUI({ comfyDir: COMFYUI_DIR, customNodesDir: nodes, inputDir: input });
  const models = join(comfy.baseDir, 'models', 'streamdiffusion');
  await mkdir(models, { recursive: true });
  await symlink(fixture('models/tiny-sd-turbo'), join(models, 'stabilityai--sd-turbo'));
  await symlink(fixture('controlnets/micro-canny'), join(models, 'lllyasviel--control_v11p_sd15_canny'));
  await mkdir(join(comfy.baseDir, 'models', 'loras'), { recursive: true });
  await symlink(fixture('loras/kohya.safetensors'), join(comfy.baseDir, 'models', 'loras', 'kohya.safetensors'));
  // micro-sd-turbo whose UNet takes both ControlNet residuals and IP-Adapter tokens, as sd15-ipadapter.
  const both = join(models, 'sd15-ipadapter');
  await cp(fixture('models/micro-sd-turbo-ipadapter'), both, { recursive: true });
  await rm(join(both, 'unet'), { recursive: true });
  await cp(fixture('ip-adapters/micro-regular-controlnet-unet'), join(both, 'unet'), { recursive: true });
  return {
    comfy,
    pack: join(nodes, PACK_NAME),
    cleanup: async () => {
      await comfy.stop();
      await rm(nodes, { recursive: true, force: true });
      await rm(input, { recursive: true, force: true });
    },
  };
}

/** An example workflow for the tiny models: 64×64 on the CPU, and a seed of the test's own (its own pipeline). */
async function tinyWorkflow(name: string, seed: number): Promise<ApiWorkflow> {
  const api = await workflow(name);
  for (const node of Object.values(api)) {
    if (node.class_type === 'StreamDiffusionLoadPipeline') Object.assign(node.inputs, { width: 64, height: 64, device: 'cpu', seed });
    if (node.class_type === 'StreamDiffusionUpdateParameters') Object.assign(node.inputs, { seed });
  }
  return api;
}

const savedImage = async (comfy: RunningComfyUI, run: PromptRun, node: string): Promise<RgbImage[]> =>
  await Promise.all(run.history!.outputs[node]!.images!.map(async (saved) => await readImage(join(comfy.outputDir, saved.subfolder, saved.filename))));

const succeeded = (run: PromptRun): void => {
  expect(run.node_errors, JSON.stringify(run.error)).toEqual({});
  const error = executionError(run);
  expect(run.history?.status.status_str, error === undefined ? 'no history' : `node ${error.node_id}: ${error.exception_type}: ${error.exception_message}`).toBe('success');
};

describe.skipIf(COMFYUI_DIR === undefined)('the node pack in a real ComfyUI 0.3.64 (CPU)', () => {
  let comfy: RunningComfyUI;
  let pack: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ comfy, pack, cleanup } = await startWithPack());
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it('serialises every generated node to the /object_info entry the generator expects', async () => {
    const info = (await (await fetch(`${comfy.url}/object_info`)).json()) as Record<string, Record<string, unknown>>;
    const expected = JSON.parse(await readFile(join(pack, 'object_info.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(expected)).toHaveLength(7);
    for (const [id, entry] of Object.entries(expected)) expect(info[id], id).toEqual(entry);
    // What the workflow conversion assumes about ComfyUI's own LoadImage and SaveImage.
    for (const [id, entry] of Object.entries(COMFY_CORE_NODES)) {
      const real = info[id] as { input: { required: Record<string, [unknown, Record<string, unknown>]> }; input_order: unknown; output: unknown; output_name: unknown; display_name: unknown };
      expect({ input_order: { required: (real.input_order as { required: unknown }).required }, output: real.output, output_name: real.output_name, display_name: real.display_name }, id).toEqual({
        input_order: entry.input_order,
        output: entry.output,
        output_name: entry.output_name,
        display_name: entry.display_name,
      });
      for (const [name, [type, options]] of Object.entries(entry.input.required)) {
        const [realType, realOptions] = real.input.required[name]!;
        if (Array.isArray(type)) expect(Array.isArray(realType), `${id}.${name} is a COMBO`).toBe(true);
        else expect(realType, `${id}.${name}`).toBe(type);
        expect(realOptions, `${id}.${name}`).toMatchObject(options as Record<string, unknown>);
      }
    }
  });

  it('lists the example workflows as the pack’s templates', async () => {
    const templates = (await (await fetch(`${comfy.url}/workflow_templates`)).json()) as Record<string, string[]>;
    expect(templates[PACK_NAME]?.sort()).toEqual(['controlnet-ipadapter', 'img2img']);
    const served = await (await fetch(`${comfy.url}/api/workflow_templates/${PACK_NAME}/img2img.json`)).text();
    expect(served).toBe(await readFile(new URL('../workflows/img2img.json', import.meta.url), 'utf8'));
  });

  it('runs the img2img workflow per frame: each re-queued prompt is the stream’s next frame, and a changed live parameter reaches it without a reload', async () => {
    const api = await tinyWorkflow('img2img', 11);
    const first = await runPrompt(comfy.url, api, { timeoutMs: 60_000 });
    succeeded(first);
    const second = await runPrompt(comfy.url, api, { timeoutMs: 60_000 });
    succeeded(second);
    const changed = structuredClone(api);
    changed['3']!.inputs.seed = 99; // (a new prompt barely moves the random-weight tiny model; a new seed does)
    const third = await runPrompt(comfy.url, changed, { timeoutMs: 60_000 });
    succeeded(third);
    const fourth = await runPrompt(comfy.url, changed, { timeoutMs: 60_000 });
    succeeded(fourth);
    // Only the sampler (and the changed update node) ran again: the load node came from ComfyUI's cache.
    expect(cachedNodes(second)).toEqual(['1', '2', '3']);
    expect(cachedNodes(third)).toEqual(['1', '2']);
    expect(cachedNodes(fourth)).toEqual(['1', '2', '3']);

    const images = (await Promise.all([first, second, third, fourth].map(async (run) => await savedImage(comfy, run, '5')))).flat();
    const model = fixture('models/tiny-sd-turbo');
    const expected = await libraryFrames(
      { model, parameters: schemaValues(api['2']!.inputs, ['model', 'device']), updates: new Map([[0, schemaValues(api['3']!.inputs)], [2, schemaValues(changed['3']!.inputs)]]) },
      [FRAME, FRAME, FRAME, FRAME],
    );
    expect(images.map((image) => [image.width, image.height])).toEqual([[64, 64], [64, 64], [64, 64], [64, 64]]);
    for (const [index, image] of images.entries()) expect(maxDifference(image, expected[index]!), `frame ${index}`).toBeLessThanOrEqual(1);
    // The frames differ: the stream moved on (its denoising batch fills), and the new seed took hold
    // (a frame later: with two steps in the batch, an output carries the noise of the frame before).
    expect(maxDifference(expected[0]!, expected[1]!)).toBeGreaterThan(8);
    expect(maxDifference(expected[1]!, expected[3]!)).toBeGreaterThan(8);
  });

  it('runs the ControlNet + IP-Adapter workflow (style image from LoadImage) and equals the library', async () => {
    const api = await tinyWorkflow('controlnet-ipadapter', 12);
    // One step and larger scales: the random-weight micro models answer to the ControlNet and the style image visibly.
    Object.assign(api['5']!.inputs, { t_index_list: '0' });
    Object.assign(api['3']!.inputs, { conditioning_scale: 2 });
    Object.assign(api['4']!.inputs, { scale: 2 });
    const run = await runPrompt(comfy.url, api, { timeoutMs: 120_000 });
    succeeded(run);
    const [image] = await savedImage(comfy, run, '7');
    const models = join(comfy.baseDir, 'models', 'streamdiffusion');
    const [expected] = await libraryFrames(
      {
        model: join(models, 'sd15-ipadapter'),
        parameters: schemaValues(api['5']!.inputs, ['model', 'device']),
        controlnets: [{ ...schemaValues(api['3']!.inputs), model_id: join(models, 'lllyasviel--control_v11p_sd15_canny') }],
        ipadapters: [{ ...schemaValues(api['4']!.inputs), ipadapter_model_path: join(models, 'sd15-ipadapter'), style_image: STYLE }],
      },
      [FRAME],
    );
    expect(maxDifference(image!, expected!)).toBeLessThanOrEqual(1);
    // The ControlNet and the style image matter: without them the library makes another image.
    const [plain] = await libraryFrames(
      {
        model: join(models, 'sd15-ipadapter'),
        parameters: schemaValues(api['5']!.inputs, ['model', 'device']),
        controlnets: [{ ...schemaValues(api['3']!.inputs), model_id: join(models, 'lllyasviel--control_v11p_sd15_canny'), conditioning_scale: 0 }],
        ipadapters: [{ ...schemaValues(api['4']!.inputs), ipadapter_model_path: join(models, 'sd15-ipadapter'), style_image: STYLE, scale: 0 }],
      },
      [FRAME],
    );
    expect(maxDifference(image!, plain!)).toBeGreaterThan(4);
  });

  it('merges LoRAs from LoRA nodes (a name in models/loras) into the model, and changes them live through the update node', async () => {
    const api = await tinyWorkflow('img2img', 16);
    api['6'] = { class_type: 'StreamDiffusionLoRA', inputs: { path: 'kohya.safetensors', scale: 2 } };
    api['2']!.inputs.lora = ['6', 0];
    Object.assign(api['2']!.inputs, { t_index_list: '20' });
    Object.assign(api['3']!.inputs, { t_index_list: '20' });
    const first = await runPrompt(comfy.url, api, { timeoutMs: 60_000 });
    succeeded(first);
    // Live: a chain of two LoRAs on the update node replaces the load node's.
    const changed = structuredClone(api);
    changed['7'] = { class_type: 'StreamDiffusionLoRA', inputs: { path: fixture('loras/peft.safetensors'), scale: 8, lora: ['6', 0] } };
    changed['3']!.inputs.lora = ['7', 0];
    const second = await runPrompt(comfy.url, changed, { timeoutMs: 60_000 });
    succeeded(second);
    expect(cachedNodes(second), 'the load node came from the cache').toContain('2');
    const kohya = { path: fixture('loras/kohya.safetensors'), scale: 2 };
    const model = fixture('models/tiny-sd-turbo');
    const parameters = { ...schemaValues(api['2']!.inputs, ['model', 'device']), ...schemaValues(api['3']!.inputs) };
    const [withKohya] = await libraryFrames({ model, parameters, loras: [kohya] }, [FRAME]);
    const [withBoth] = await libraryFrames({ model, parameters, loras: [kohya, { path: fixture('loras/peft.safetensors'), scale: 8 }] }, [FRAME]);
    const [plain] = await libraryFrames({ model, parameters }, [FRAME]);
    const [one] = await savedImage(comfy, first, '5');
    const [two] = await savedImage(comfy, second, '5');
    expect(maxDifference(one!, withKohya!)).toBeLessThanOrEqual(1);
    expect(maxDifference(two!, withBoth!)).toBeLessThanOrEqual(1);
    expect(maxDifference(withKohya!, plain!)).toBeGreaterThan(2);
    expect(maxDifference(withBoth!, withKohya!)).toBeGreaterThan(2);
  });

  it('plans the pipeline’s TensorRT engines on the Build engines node (an output node) and, without TensorRT, fails naming its install guide', async () => {
    const api = await tinyWorkflow('img2img', 17);
    const store = join(pack, 'engine-store');
    const build = { pipeline: ['2', 0], resolution: 'static', min_resolution: 256, max_resolution: 1024, precision: 'fp16', refit: true, dry_run: true, trtexec: '', store };
    // Only the load node and the output node: ComfyUI runs an output node with nothing downstream.
    const prompt = { '2': api['2']!, '8': { class_type: 'StreamDiffusionBuildEngines', inputs: build } };
    const dry = await runPrompt(comfy.url, prompt, { timeoutMs: 60_000 });
    succeeded(dry);
    const [text] = (dry.history!.outputs['8'] as { text?: string[] }).text ?? [];
    expect(text).toContain(`plan for ${join(comfy.baseDir, 'models', 'streamdiffusion', 'stabilityai--sd-turbo')} (static resolution, fp16); store ${store}`);
    // The pipeline's 64×64 and its two-step t_index_list (cfg none: one row per step) made the profiles.
    expect(text).toMatch(/^unet: .*batch 2–2 \(opt 2\)$/m);
    expect(text).toMatch(/--optShapes=sample:2x4x8x8,.* --fp16 .*--refit --skipInference/);
    const failed = await runPrompt(comfy.url, { ...prompt, '8': { class_type: 'StreamDiffusionBuildEngines', inputs: { ...build, dry_run: false, trtexec: '/nowhere/trtexec' } } }, { timeoutMs: 60_000 });
    expect(executionError(failed)).toMatchObject({ node_id: '8', exception_message: expect.stringContaining('/nowhere/trtexec is not an executable file. Install TensorRT (https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html)') });
    await expect(readdir(store)).rejects.toThrow(/ENOENT/);
  });

  it('refuses a bad value with a node error that names the field and the value, and the next prompt runs', async () => {
    // ComfyUI's own validation (the range our schema gave the widget).
    const tooWide = await tinyWorkflow('img2img', 13);
    tooWide['2']!.inputs.width = 9000;
    const refused = await runPrompt(comfy.url, tooWide, { timeoutMs: 30_000 });
    expect(refused.status).toBe(400);
    expect(JSON.stringify(refused.node_errors['2'])).toMatch(/width.*9000|9000.*width/);
    // Ours: the sidecar re-validates with the zod schema when the node runs.
    const outOfSchedule = await tinyWorkflow('img2img', 13);
    outOfSchedule['2']!.inputs.t_index_list = '32,60';
    const failed = await runPrompt(comfy.url, outOfSchedule, { timeoutMs: 30_000 });
    expect(failed.history?.status.status_str).toBe('error');
    const error = executionError(failed);
    expect(error?.node_id).toBe('2');
    expect(error?.exception_message).toContain('t_index_list');
    expect(error?.exception_message).toContain('60');
    const notIntegers = await tinyWorkflow('img2img', 13);
    notIntegers['3']!.inputs.t_index_list = '32;45';
    const undecodable = executionError(await runPrompt(comfy.url, notIntegers, { timeoutMs: 30_000 }));
    expect(undecodable?.node_id).toBe('3');
    expect(undecodable?.exception_message.trim()).toBe("t_index_list: expected integers separated by commas (like 32,45), got '32;45'");
    succeeded(await runPrompt(comfy.url, await tinyWorkflow('img2img', 13), { timeoutMs: 60_000 }));
  });

  it('fails the prompt whose sidecar is killed mid-sample with a node error saying so; the next prompt starts a new sidecar and works', async () => {
    const api = await tinyWorkflow('img2img', 14);
    succeeded(await runPrompt(comfy.url, api, { timeoutMs: 60_000 }));
    const sidecar = await sidecarOf(comfy);
    expect(sidecar, 'a sidecar under ComfyUI').toBeDefined();
    // Many frames, so the sampler is busy for seconds; killed once it has used 0.3 s of CPU on them.
    const many = structuredClone(api);
    many['6'] = { class_type: 'RepeatImageBatch', inputs: { image: ['1', 0], amount: 600 } };
    many['4']!.inputs.image = ['6', 0];
    const running = runPrompt(comfy.url, many, { timeoutMs: 120_000 });
    await waitFor('the sidecar to work on the frames', async () => ((await sidecarOf(comfy))?.cpuTicks ?? 0) - sidecar!.cpuTicks >= 30, 60_000);
    process.kill(sidecar!.pid, 'SIGKILL');
    const killed = await running;
    expect(killed.history?.status.status_str).toBe('error');
    const error = executionError(killed);
    expect(error?.node_id).toBe('4');
    expect(error?.exception_type).toContain('SidecarError');
    expect(error?.exception_message.trim()).toMatch(/^the StreamDiffusion sidecar stopped during sample \(exit code -9; .*\. The next prompt starts a new one\.$/);

    // The next prompt: a new sidecar, which does not know the pipeline; the sampler loads it again.
    const next = await runPrompt(comfy.url, api, { timeoutMs: 60_000 });
    succeeded(next);
    const restarted = await sidecarOf(comfy);
    expect(restarted?.pid).not.toBe(sidecar!.pid);
    expect(restarted?.pid).toBeDefined();
    // A sidecar that died between prompts is replaced before the next call, without an error.
    process.kill(restarted!.pid, 'SIGKILL');
    await waitFor('the killed sidecar to go', async () => !(await alive(restarted!.pid)), 10_000);
    succeeded(await runPrompt(comfy.url, api, { timeoutMs: 60_000 }));
  });
});

describe.skipIf(COMFYUI_DIR === undefined)('ComfyUI killed (SIGKILL) with a sidecar running', () => {
  it('leaves no orphan: the sidecar sees its stdin close and exits', async () => {
    const { comfy, cleanup } = await startWithPack();
    try {
      succeeded(await runPrompt(comfy.url, await tinyWorkflow('img2img', 15), { timeoutMs: 60_000 }));
      const sidecar = await sidecarOf(comfy);
      expect(sidecar).toBeDefined();
      process.kill(comfy.process.pid!, 'SIGKILL'); // ComfyUI only, not its process group: no cleanup code of ours runs
      await waitFor('ComfyUI to die', async () => !(await alive(comfy.process.pid!)), 10_000);
      await waitFor(`the sidecar (pid ${sidecar!.pid}) to exit`, async () => !(await alive(sidecar!.pid)), 10_000);
    } finally {
      await cleanup();
    }
  });
});
