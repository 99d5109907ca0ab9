/**
 * What the sidecar does for the nodes: one pipeline per handle (a handle is the load request
 * itself, so a sidecar that restarted after a crash makes the pipeline again from it), every call
 * re-validated with the zod schemas, hot parameters applied between two frames, frames in and out
 * as uint8 RGB. Transport-free: main.ts feeds it messages from stdin or a socket.
 */
import { createHash } from 'node:crypto';
import {
  configToStreamDiffusionOptions,
  createRuntime,
  createStreamDiffusion,
  DEVICE_REQUESTS,
  hotParametersShape,
  InvalidArgumentError,
  loadModel,
  streamDiffusionConfigSchema,
  streamParametersShape,
  withoutDefaults,
  type AnyUNetWrapperV1,
  type LoadedModel,
  type RgbImage,
  type Runtime,
  type StreamDiffusion,
  valueAt,
} from '@streamdiffusion/core';
import { controlNetEntrySchema, createControlNet } from '@streamdiffusion/controlnet';
import { createIpAdapter, ipAdapterEntrySchema } from '@streamdiffusion/ip-adapter';
import {
  buildEngines,
  createEngineStore,
  createHotLora,
  describeBuildReport,
  ipAdapterImageTokensOf,
  lorasSchema,
  planEngines,
  type HotLora,
} from '@streamdiffusion/tensorrt';
import { z } from 'zod';
import { PLAN_WIDGET_KEYS, planNamesForNodes } from '../catalogue/node-catalogue.js';
import { PROTOCOL_VERSION, schemaHash } from '../catalogue/schema-hash.js';

/** A request the nodes got wrong: the message names the field, the value and what was expected. */
export class RequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Style images travel as `{ width, height, channels, base64 }` (uint8 RGB) inside the JSON. */
const pixelsSchema = z.object({ width: z.number().int().positive(), height: z.number().int().positive(), channels: z.literal(3), base64: z.string() }).strict();

const loadSchema = z
  .object({
    model: z.string().min(1).describe('the model folder'),
    device: z.enum(DEVICE_REQUESTS),
    parameters: z.object(streamParametersShape).partial().strict(),
    controlnets: z.array(controlNetEntrySchema).default([]),
    ipadapters: z.array(z.record(z.string(), z.unknown())).max(1, { message: 'one IP-Adapter per pipeline' }).default([]),
    loras: lorasSchema.default([]),
  })
  .strict();
export type LoadRequest = z.input<typeof loadSchema>;

// Only the keys given: a default must not reset what an earlier update set.
// LoRAs ride along with the hot parameters: merged into the model's weights in memory, no reload.
const hotSchema = z.object({ ...withoutDefaults(hotParametersShape), loras: lorasSchema }).partial().strict();
// Frames name their pipeline by handle only: the load request (an IP-Adapter's style image can be a
// megabyte of base64) crosses the pipe and is validated once, at load, not with every frame.
const sampleSchema = z.object({ handle: z.string(), hot: hotSchema.default({}), frames: z.number().int().positive(), width: z.number().int().positive(), height: z.number().int().positive() }).strict();

// The Build engines node: a pipeline's load request and the plan's options (as the node's widgets name them).
const buildSchema = z
  .object({
    request: z.unknown(),
    // The plan's widgets (min_resolution, …), checked by planEngines under the plan's own keys.
    ...Object.fromEntries(PLAN_WIDGET_KEYS.map((key) => [planNamesForNodes(key), z.unknown()])),
    refit: z.boolean(),
    dry_run: z.boolean(),
    trtexec: z.string().min(1).optional(),
    store: z.string().min(1).optional(),
    // The LoRAs an update node gave the pipeline (instead of the load request's).
    loras: lorasSchema.optional(),
  })
  .strict();

const describeValue = (value: unknown): string => (value === undefined ? 'nothing' : (JSON.stringify(value) ?? typeof value).slice(0, 80));

/** Parses with a schema, or throws a RequestError naming the first bad field, its value and the rule. */
function parse<Schema extends z.ZodType>(schema: Schema, value: unknown, what: string): z.output<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const at = valueAt(value, issue.path);
  throw new RequestError(`${what}: ${issue.path.join('.') || '(request)'}: ${issue.message} (got ${describeValue(at)})`);
}

/** An IP-Adapter entry with its pixel style image made an RgbImage, then checked by the adapter's schema. */
function ipAdapterEntry(entry: Readonly<Record<string, unknown>>, index: number): z.output<ReturnType<typeof ipAdapterEntrySchema>> {
  const image = entry.style_image;
  const withPixels =
    typeof image === 'object' && image !== null
      ? (() => {
          const pixels = parse(pixelsSchema, image, `ipadapters.${index}.style_image`);
          const data = new Uint8Array(Buffer.from(pixels.base64, 'base64'));
          if (data.length !== pixels.width * pixels.height * 3) throw new RequestError(`ipadapters.${index}.style_image: ${data.length} bytes for ${pixels.width}×${pixels.height} RGB`);
          return { ...entry, style_image: { data, width: pixels.width, height: pixels.height, channels: 3 } satisfies RgbImage };
        })()
      : entry;
  return parse(ipAdapterEntrySchema('paths-or-pixels'), withPixels, `ipadapters.${index}`);
}

/** A sample for a pipeline this sidecar does not have (it restarted since the load): load it again, then sample. */
export class UnknownHandleError extends RequestError {
  constructor(handle: string) {
    super(`sample: no pipeline ${handle} in this sidecar (it started after the load): load it again`);
    this.name = 'UnknownHandleError';
  }
}

/** The handle of a load request: a hash of what it asks for (so equal requests share a pipeline). */
export const handleOf = (request: unknown): string => `sd-${createHash('sha256').update(JSON.stringify(request)).digest('hex').slice(0, 16)}`;

interface Entry {
  readonly stream: StreamDiffusion;
  readonly device: string;
  /** The model's key (pipelines on one model share its weights, and so its LoRAs). */
  readonly modelKey: string;
  /** The load request's LoRAs (an update's replace them). */
  readonly loras: z.output<typeof lorasSchema>;
  /** The hot parameters last applied (JSON), so an unchanged set costs nothing. */
  applied: string;
}

export interface SidecarService {
  /** Answers one request: its result and the binary part of the answer. */
  handle(method: string, params: unknown, binary: Uint8Array): Promise<{ readonly result: Record<string, unknown>; readonly binary?: Uint8Array }>;
  dispose(): Promise<void>;
}

export function createSidecarService(options: { readonly log?: (line: string) => void } = {}): SidecarService {
  const log = options.log ?? (() => undefined);
  const runtimes = new Map<string, Promise<Runtime>>();
  const models = new Map<string, Promise<LoadedModel>>();
  const pipelines = new Map<string, Promise<Entry>>();
  // Per model: its hot LoRA and the set merged last, so a frame of another set merges again.
  const loras = new Map<string, { readonly hot: Promise<HotLora>; applied: string }>();
  const lorasFor = async (entry: Entry, wanted: z.output<typeof lorasSchema>): Promise<void> => {
    let state = loras.get(entry.modelKey);
    if (state === undefined) {
      if (wanted.length === 0) return;
      state = { hot: models.get(entry.modelKey)!.then((model) => createHotLora(model, { log })), applied: '[]' };
      loras.set(entry.modelKey, state);
      // A model LoRAs cannot change (no layer names) is tried again with the next set, not kept failed.
      state.hot.catch(() => loras.delete(entry.modelKey));
    }
    const key = JSON.stringify(wanted);
    if (key === state.applied) return;
    await (await state.hot).apply(wanted);
    state.applied = key;
  };

  const runtimeFor = (device: (typeof DEVICE_REQUESTS)[number]): Promise<Runtime> => {
    let runtime = runtimes.get(device);
    if (runtime === undefined) {
      runtime = createRuntime({ device });
      runtimes.set(device, runtime);
      runtime.catch(() => runtimes.delete(device));
    }
    return runtime;
  };

  /** One model per device and folder; pipelines on it share its weights (and so its LoRAs). */
  const modelKeyOf = (device: (typeof DEVICE_REQUESTS)[number], folder: string): string => `${device}\0${folder}`;
  const modelFor = (device: (typeof DEVICE_REQUESTS)[number], folder: string): Promise<LoadedModel> => {
    const key = modelKeyOf(device, folder);
    let model = models.get(key);
    if (model === undefined) {
      model = runtimeFor(device).then((runtime) => loadModel({ runtime, folder }));
      models.set(key, model);
      model.catch(() => models.delete(key));
    }
    return model;
  };

  /** The pipeline of a load request, made once. */
  const pipelineFor = (raw: unknown): { readonly handle: string; readonly entry: Promise<Entry> } => {
    const request = parse(loadSchema, raw, 'load');
    const handle = handleOf(raw);
    let entry = pipelines.get(handle);
    if (entry === undefined) {
      entry = (async () => {
        const config = parse(streamDiffusionConfigSchema, { ...request.parameters, model_id: request.model }, 'parameters');
        const ipadapters = request.ipadapters.map(ipAdapterEntry);
        const model = await modelFor(request.device, request.model);
        const wrappers: AnyUNetWrapperV1[] = [];
        if (request.controlnets.length > 0 || model.capabilities.controlNet !== null) wrappers.push(createControlNet({ controlnets: request.controlnets }));
        if (ipadapters.length > 0) wrappers.push(await createIpAdapter({ ipadapters }));
        const make = async (): Promise<StreamDiffusion> => await createStreamDiffusion({ model, wrappers, ...configToStreamDiffusionOptions(config) });
        const stream = await make();
        log(`pipeline ${handle}: ${request.model} on ${model.runtime.device.device}, ${stream.width}×${stream.height}`);
        return { stream, device: model.runtime.device.device, modelKey: modelKeyOf(request.device, request.model), loras: request.loras, applied: JSON.stringify({}) };
      })();
      pipelines.set(handle, entry);
      entry.catch(() => pipelines.delete(handle));
    }
    return { handle, entry };
  };

  return {
    async handle(method, params, binary) {
      switch (method) {
        case 'hello':
          return { result: { protocol: PROTOCOL_VERSION, schemaHash: schemaHash(), pid: process.pid } };
        case 'load': {
          const { handle, entry } = pipelineFor(params);
          const loaded = await entry;
          // The load node's LoRAs merge now: a bad file fails this node, and the first frame does not wait for the merge.
          await lorasFor(loaded, loaded.loras);
          const { stream, device } = loaded;
          return { result: { handle, width: stream.width, height: stream.height, device } };
        }
        case 'check_update': {
          const { parameters } = parse(z.object({ parameters: z.unknown() }).strict(), params, 'update');
          return { result: { parameters: parse(hotSchema, parameters, 'update') } };
        }
        case 'sample': {
          const request = parse(sampleSchema, params, 'sample');
          // A malformed batch is refused before it changes anything (LoRAs, parameters).
          const frameBytes = request.width * request.height * 3;
          if (binary.byteLength !== request.frames * frameBytes) throw new RequestError(`sample: ${binary.byteLength} bytes of frames for ${request.frames} × ${request.width}×${request.height} RGB (${request.frames * frameBytes} expected)`);
          const { handle } = request;
          const pending = pipelines.get(handle);
          if (pending === undefined) throw new UnknownHandleError(handle);
          const entry = await pending;
          const { stream } = entry;
          const { loras: hotLoras, ...parameters } = request.hot;
          await lorasFor(entry, hotLoras ?? entry.loras);
          const hot = JSON.stringify(parameters);
          if (hot !== entry.applied) {
            await stream.update(parameters);
            entry.applied = hot;
          }
          const out = new Uint8Array(request.frames * stream.width * stream.height * 3);
          for (let index = 0; index < request.frames; index += 1) {
            const frame: RgbImage = { data: binary.subarray(index * frameBytes, (index + 1) * frameBytes), width: request.width, height: request.height, channels: 3 };
            const result = await stream.img2img(frame);
            out.set(result.images[0]!.data, index * stream.width * stream.height * 3);
          }
          return { result: { handle, frames: request.frames, width: stream.width, height: stream.height }, binary: out };
        }
        case 'build_engines': {
          const build = parse(buildSchema, params, 'build_engines');
          const request = parse(loadSchema, build.request, 'build_engines.request');
          const config = parse(streamDiffusionConfigSchema, { ...request.parameters, model_id: request.model }, 'parameters');
          const type = request.ipadapters[0]?.type;
          const imageTokens = ipAdapterImageTokensOf(typeof type === 'string' ? type : undefined);
          // The widgets back under the plan's keys; planEngines validates them.
          const options = Object.fromEntries(PLAN_WIDGET_KEYS.map((key) => [key, (build as Record<string, unknown>)[planNamesForNodes(key)]]));
          let plan;
          try {
            plan = await planEngines({ config, model: request.model, controlnets: request.controlnets.map((entry) => entry.model_id), ...(imageTokens === undefined ? {} : { ipAdapterImageTokens: imageTokens }), options });
          } catch (error) {
            // Named as the node names them (minResolution → min_resolution).
            if (error instanceof InvalidArgumentError) throw new RequestError(`build_engines: ${planNamesForNodes(error.message)}`);
            throw error;
          }
          const report = await buildEngines({
            plan,
            store: createEngineStore({ folder: build.store }),
            ...(build.trtexec === undefined ? {} : { trtexec: build.trtexec }),
            ...(build.refit ? { refittable: true } : {}),
            loras: build.loras ?? request.loras,
            dryRun: build.dry_run,
            onProgress: log,
          });
          return { result: { text: describeBuildReport(report).join('\n'), report } };
        }
        case 'dispose': {
          const { handle } = parse(z.object({ handle: z.string() }).strict(), params, 'dispose');
          const entry = pipelines.get(handle);
          pipelines.delete(handle);
          if (entry !== undefined) await (await entry).stream.dispose();
          return { result: { disposed: entry !== undefined } };
        }
        case 'crash':
          // For the tests of what the nodes do when the sidecar dies mid-prompt.
          if (process.env.STREAMDIFFUSION_SIDECAR_TEST === '1') process.exit(70);
          throw new RequestError('crash: only in tests (STREAMDIFFUSION_SIDECAR_TEST=1)');
        default:
          throw new RequestError(`unknown method ${JSON.stringify(method)}; expected hello, load, check_update, sample, build_engines or dispose`);
      }
    },
    async dispose() {
      for (const entry of pipelines.values()) await (await entry.catch(() => undefined))?.stream.dispose();
      for (const model of models.values()) await (await model.catch(() => undefined))?.dispose();
      for (const runtime of runtimes.values()) await (await runtime.catch(() => undefined))?.dispose();
      pipelines.clear();
      models.clear();
      runtimes.clear();
    },
  };
}
