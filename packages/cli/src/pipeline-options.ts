/**
 * From flags and an optional config file to a pipeline: the config file first, the flags over it,
 * validated by the config schema (so `--t-index-list 99` fails as `t_index_list: 99` in a file
 * would, naming the flag), the model and the wrappers a config asks for loaded.
 */
import { resolve } from 'node:path';
import {
  configToStreamDiffusionOptions,
  createRuntime,
  createStreamDiffusion,
  loadConfig,
  loadModel,
  readModelFolder,
  streamDiffusionConfigSchema,
  streamParametersShape,
  type AnyUNetWrapperV1,
  type DeviceRequest,
  type LoadedConfig,
  type Runtime,
  type StreamDiffusion,
  type StreamDiffusionConfig,
} from '@streamdiffusion/core';
import { controlNetConfigFields, controlNetFromConfig, createControlNet } from '@streamdiffusion/controlnet';
import { ipAdapterConfigFields, ipAdapterFromConfig } from '@streamdiffusion/ip-adapter';
import { createLoraMerger, loraConfigFields, lorasFromConfig, type LoraMerger } from '@streamdiffusion/tensorrt';
import { Option, type Command } from 'commander';
import { commanderOptions, flagValues, kebab, schemaFlags, type SchemaFlag } from './flags.js';
import { CliError, EXIT_CODES } from './io.js';

/** The wrappers' config fields a config file may hold (ControlNets, an IP-Adapter, LoRAs). */
export const WRAPPER_CONFIG_FIELDS = Object.freeze({ ...controlNetConfigFields, ...ipAdapterConfigFields, ...loraConfigFields });

/** The pipeline parameter flags (every key of the parameter schema). */
export const PARAMETER_FLAGS: readonly SchemaFlag[] = schemaFlags(streamParametersShape);

/** Adds the model, device, config and parameter flags to a command. */
export function withPipelineFlags(command: Command): Command {
  command
    .option('--model <folder>', 'model folder (made by tools/export), or a name in --models-dir; overrides the config file’s model_id')
    .option('--config <file>', 'a config file (YAML or JSON, the Python forks’ format) read first; flags override it')
    .option('--models-dir <folder>', 'folder of named models, for model_id, ControlNets and IP-Adapters that are not paths')
    .addOption(new Option('--device <device>', 'where models run').choices(['auto', 'cpu', 'webgpu', 'cuda', 'tensorrt']).default('auto'));
  for (const option of commanderOptions(PARAMETER_FLAGS)) command.addOption(option);
  return command;
}

/** A loaded pipeline and what to release after. */
export interface OpenPipeline {
  readonly stream: StreamDiffusion;
  readonly config: StreamDiffusionConfig;
  readonly runtime: Runtime;
  close(): Promise<void>;
}

/** The flag that sets a config key (`t_index_list.1` → `--t-index-list`), for messages. */
function flagOf(path: readonly PropertyKey[]): string {
  const key = String(path[0] ?? '');
  return PARAMETER_FLAGS.some((flag) => flag.key === key) ? `--${kebab(key)}` : key === 'model_id' ? '--model' : key;
}

/** The config the flags and the config file make together, validated. */
export async function resolveConfig(options: Readonly<Record<string, unknown>>): Promise<{ readonly config: StreamDiffusionConfig; readonly loaded?: LoadedConfig }> {
  const flags = flagValues(PARAMETER_FLAGS, options);
  const modelsDir = typeof options.modelsDir === 'string' ? resolve(options.modelsDir) : undefined;
  let loaded: LoadedConfig | undefined;
  let base: Record<string, unknown> = {};
  if (typeof options.config === 'string') {
    loaded = await loadConfig(resolve(options.config), { wrapperParameters: WRAPPER_CONFIG_FIELDS, ...(modelsDir === undefined ? {} : { modelsDir }) });
    base = { ...loaded.config, model_id: loaded.modelFolder };
  }
  const model = typeof options.model === 'string' ? resolve(options.model) : base.model_id;
  if (model === undefined) throw new CliError('no model: give --model <folder> or --config <file> with a model_id', EXIT_CODES.usage);
  const parsed = streamDiffusionConfigSchema.safeParse({ ...base, ...flags, model_id: model });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CliError(`${flagOf(issue.path)}: ${issue.message}${issue.path.length > 1 ? ` (at ${issue.path.map(String).join('.')})` : ''}`, EXIT_CODES.invalid);
  }
  return loaded === undefined ? { config: parsed.data } : { config: parsed.data, loaded };
}

/** A loaded model that makes pipelines: one for a command, one per client for the server. */
export interface OpenModel {
  readonly config: StreamDiffusionConfig;
  readonly runtime: Runtime;
  /** A new pipeline on the model, with its own wrappers (the config's ControlNets and IP-Adapter). */
  pipeline(): Promise<StreamDiffusion>;
  /** Releases the model and the runtime (dispose the pipelines first). */
  close(): Promise<void>;
}

/** A LoRA merger for a model folder's UNet and text encoder, merging on `runtime`'s device. */
async function loraMergerOf(folder: string, runtime: Runtime): Promise<LoraMerger> {
  const { models } = await readModelFolder(folder);
  return await createLoraMerger({ unet: models.unet, text_encoder: models.text_encoder }, { runtime });
}

/** Loads the model the flags and config describe, once. */
export async function openModel(options: Readonly<Record<string, unknown>>): Promise<OpenModel> {
  const { config, loaded } = await resolveConfig(options);
  const modelsDir = typeof options.modelsDir === 'string' ? resolve(options.modelsDir) : undefined;
  const runtime = await createRuntime({ device: (options.device ?? 'auto') as DeviceRequest });
  try {
    // The config's LoRAs, merged into the weights before the model loads (once, merged).
    const loras = loaded === undefined ? [] : await lorasFromConfig(loaded, modelsDir === undefined ? {} : { modelsDir });
    const sources = loras.length === 0 ? undefined : (await (await loraMergerOf(config.model_id, runtime)).merge(loras)).sources;
    const model = await loadModel({ runtime, folder: config.model_id, ...(sources === undefined ? {} : { sources }) });
    const wrappers = async (): Promise<AnyUNetWrapperV1[]> => {
      const made: AnyUNetWrapperV1[] = [];
      if (loaded === undefined) {
        if (model.capabilities.controlNet !== null) made.push(createControlNet());
        return made;
      }
      const where = modelsDir === undefined ? {} : { modelsDir };
      if (((loaded.config.controlnets as unknown[] | undefined) ?? []).length > 0 || model.capabilities.controlNet !== null) made.push(await controlNetFromConfig(loaded, where));
      const ipAdapter = await ipAdapterFromConfig(loaded, where);
      if (ipAdapter !== undefined) made.push(ipAdapter);
      return made;
    };
    return {
      config,
      runtime,
      pipeline: async () => await createStreamDiffusion({ model, wrappers: await wrappers(), ...configToStreamDiffusionOptions(config) }),
      close: async () => {
        await model.dispose();
        await runtime.dispose();
      },
    };
  } catch (error) {
    await runtime.dispose();
    throw error;
  }
}

/** Loads the model and builds one pipeline (with the config's ControlNets and IP-Adapter). */
export async function openPipeline(options: Readonly<Record<string, unknown>>): Promise<OpenPipeline> {
  const opened = await openModel(options);
  try {
    const stream = await opened.pipeline();
    return {
      stream,
      config: opened.config,
      runtime: opened.runtime,
      close: async () => {
        await stream.dispose();
        await opened.close();
      },
    };
  } catch (error) {
    await opened.close();
    throw error;
  }
}
