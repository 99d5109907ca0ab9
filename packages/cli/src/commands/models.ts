/**
 * `models list` and `models verify`: what model folders there are, and whether one loads. `list`
 * reads each folder's files (fast, no model is loaded); `verify` loads every model of one folder in
 * a runtime and reports what the UNet takes (ControlNet inputs, IP-Adapter, sizes).
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createRuntime, loadModel, ModelFolderError, readModelFolder, type DeviceRequest } from '@streamdiffusion/core';
import { Command, Option } from 'commander';
import { CliError, EXIT_CODES, report, type Io } from '../io.js';

/** The models folder: --models-dir, else $STREAMDIFFUSION_MODELS_DIR, else ./models. */
const modelsDirOf = (given: string | undefined): string => resolve(given ?? process.env.STREAMDIFFUSION_MODELS_DIR ?? 'models');

/** Bytes of every file under a folder. */
async function folderBytes(folder: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    total += entry.isDirectory() ? await folderBytes(path) : (await stat(path)).size;
  }
  return total;
}

const megabytes = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** What a model folder's model_index.json says the export tool made. */
function exportInfo(index: Readonly<Record<string, unknown>>): { readonly arch?: string; readonly dtype?: string; readonly ipAdapter?: string; readonly controlNetInputs?: boolean } {
  const info = index.streamdiffusion_export;
  if (typeof info !== 'object' || info === null) return {};
  const record = info as Record<string, unknown>;
  const ip = record.ip_adapter as { kind?: string } | undefined;
  return {
    ...(typeof record.arch === 'string' ? { arch: record.arch } : {}),
    ...(typeof record.dtype === 'string' ? { dtype: record.dtype } : {}),
    ...(ip?.kind === undefined ? {} : { ipAdapter: ip.kind }),
    ...(record.controlnet_inputs === true ? { controlNetInputs: true } : {}),
  };
}

export function modelsCommand(io: Io): Command {
  const models = new Command('models').description('Model folders: list the ones you have, check that one loads.');

  models
    .command('list')
    .description('List the model folders in the models folder (no model is loaded).')
    .option('--models-dir <folder>', 'the models folder (default: $STREAMDIFFUSION_MODELS_DIR or ./models)')
    .action(async (options: { modelsDir?: string }, command: Command) => {
      const root = modelsDirOf(options.modelsDir);
      const entries = await readdir(root, { withFileTypes: true }).catch(() => {
        throw new CliError(`${root}: no models folder here (give --models-dir, or set STREAMDIFFUSION_MODELS_DIR)`, EXIT_CODES.invalid);
      });
      interface Found {
        readonly name: string;
        readonly folder: string;
        readonly valid: boolean;
        readonly problem?: string;
        readonly vae?: string;
        readonly imageToImage?: boolean;
        readonly bytes?: number;
        readonly arch?: string;
        readonly dtype?: string;
        readonly ipAdapter?: string;
        readonly controlNetInputs?: boolean;
      }
      const found: Found[] = [];
      for (const entry of entries.filter((item) => item.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
        const folder = join(root, entry.name);
        try {
          const model = await readModelFolder(folder);
          found.push({ name: entry.name, folder, valid: true, vae: model.vae.kind, imageToImage: model.models.vae_encoder !== undefined, bytes: await folderBytes(folder), ...exportInfo(model.index) });
        } catch (error) {
          if (!(error instanceof ModelFolderError)) throw error;
          found.push({ name: entry.name, folder, valid: false, problem: error.message });
        }
      }
      report(io, command, { command: 'models list', modelsDir: root, models: found }, [
        ...found.map((model) =>
          model.valid
            ? `${model.name}  ${[model.arch, model.dtype, `vae ${model.vae ?? '?'}`, model.controlNetInputs === true ? 'controlnet inputs' : undefined, model.ipAdapter === undefined ? undefined : `ip-adapter ${model.ipAdapter}`, megabytes(model.bytes ?? 0)].filter((part) => part !== undefined).join(', ')}`
            : `${model.name}  not a model folder: ${model.problem ?? ''}`,
        ),
        `${found.filter((model) => model.valid).length} model folder(s) in ${root}`,
      ]);
    });

  models
    .command('verify')
    .description('Load every model of a folder and report what its UNet takes; exit code 3 if anything is wrong.')
    .argument('<folder>', 'a model folder, or a name in the models folder')
    .option('--models-dir <folder>', 'the models folder (default: $STREAMDIFFUSION_MODELS_DIR or ./models)')
    .addOption(new Option('--device <device>', 'where to load the models').choices(['auto', 'cpu', 'webgpu', 'cuda', 'tensorrt']).default('auto'))
    .action(async (folder: string, options: { modelsDir?: string; device: string }, command: Command) => {
      const direct = resolve(folder);
      const named = join(modelsDirOf(options.modelsDir), folder);
      const path = (await stat(direct).catch(() => undefined))?.isDirectory() === true ? direct : named;
      const runtime = await createRuntime({ device: options.device as DeviceRequest });
      try {
        const model = await loadModel({ runtime, folder: path });
        const capabilities = model.capabilities;
        await model.dispose();
        report(io, command, { command: 'models verify', folder: path, device: runtime.device.device, capabilities }, [
          `${path}: loads on ${runtime.device.device}`,
          `  ${capabilities.dtype}, latent ${capabilities.latentChannels}×${capabilities.latentHeight ?? 'any'}×${capabilities.latentWidth ?? 'any'}, text embeddings ${capabilities.textEmbeddingWidth} wide, vae ${capabilities.vae.kind} (scaling ${capabilities.vae.scalingFactor})`,
          `  img2img ${capabilities.imageToImage ? 'yes' : 'no (no vae_encoder)'}; ControlNet inputs ${capabilities.controlNet === null ? 'no' : 'yes'}; IP-Adapter ${capabilities.ipAdapter === null ? 'no' : `yes (${capabilities.ipAdapter.layers ?? '?'} layers)`}`,
        ]);
      } finally {
        await runtime.dispose();
      }
    });
  return models;
}
