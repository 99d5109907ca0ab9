/**
 * `models list`, `models verify` and `models pull`: what model folders there are, whether one
 * loads, and getting one from the Hugging Face hub. `list` reads each folder's files (fast, no model
 * is loaded); `verify` loads every model of one folder in a runtime and reports what the UNet takes
 * (ControlNet inputs, IP-Adapter, sizes); `pull` downloads a repo's files with progress, resume and
 * hash checks (hub-pull.ts), then reads the folder as `list` does.
 */
import { access, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { createRuntime, loadModel, ModelFolderError, readModelFolder, type DeviceRequest } from '@streamdiffusion/core';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { hubToken, pullModel, PullError, type PullProgress } from '../hub-pull.js';
import { CliError, EXIT_CODES, report, wantsJson, type Io } from '../io.js';

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

/** Progress of a pull: a bar over the bytes on a terminal, else a line per file and one every few seconds. */
function pullProgress(io: Io, quiet: boolean): { readonly onProgress: (event: PullProgress) => void; stop(): void } {
  if (quiet) return { onProgress: () => undefined, stop: () => undefined };
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'pull |{bar}| {percentage}% · {done}/{all} MB · {speed} MB/s · {file}', stream: process.stderr, hideCursor: true }) : undefined;
  const started = performance.now();
  let total = 0;
  let before = 0;
  let current = 0;
  let lastLine = started;
  const speed = (): string => ((before + current) / 1024 / 1024 / Math.max((performance.now() - started) / 1000, 1e-3)).toFixed(1);
  return {
    onProgress(event) {
      if (event.type === 'start') {
        total = event.bytes;
        bar?.start(Math.max(total, 1), 0, { done: '0.0', all: (total / 1024 / 1024).toFixed(1), speed: '0.0', file: '' });
        if (bar === undefined) io.stderr(`pull: ${event.files} file(s), ${event.present} already here, ${megabytes(total)} to download\n`);
      } else if (event.type === 'file') {
        current = 0;
        if (bar === undefined) io.stderr(`pull: ${event.path} (${megabytes(event.size)}${event.resumeAt > 0 ? `, resuming at ${megabytes(event.resumeAt)}` : ''})\n`);
      } else if (event.type === 'bytes') {
        current = event.done;
        bar?.update(before + current, { done: ((before + current) / 1024 / 1024).toFixed(1), speed: speed(), file: event.path });
        const now = performance.now();
        if (bar === undefined && now - lastLine > 5000) {
          io.stderr(`pull: ${event.path} ${megabytes(event.done)} of ${megabytes(event.total)}, ${speed()} MB/s\n`);
          lastLine = now;
        }
      } else {
        before += current;
        current = 0;
      }
    },
    stop: () => bar?.stop(),
  };
}

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
  const models = new Command('models').description('Model folders: list the ones you have, check that one loads, pull one from the Hugging Face hub.');

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
  models
    .command('pull')
    .description(
      'Download a model folder from the Hugging Face hub (or a mirror) into the models folder: with progress, resumed where an earlier pull stopped, every file checked against the hub’s sha256 / git hash. By default every file but PyTorch/Flax/TF weights and the safety checker. Exit code 4 when the hub cannot be reached or a transfer breaks off (run again to resume).',
    )
    .argument('<repo>', 'the repo, owner/name (a folder in the ONNX layout: model_index.json, unet/model.onnx, …)')
    .option('--revision <rev>', 'a branch, tag or commit', 'main')
    .option('--to <folder>', 'where the files go (default: <models folder>/<name>)')
    .option('--models-dir <folder>', 'the models folder (default: $STREAMDIFFUSION_MODELS_DIR or ./models)')
    .option('--include <glob...>', 'pull only the files these globs match (instead of the default selection)')
    .option('--exclude <glob...>', 'leave out the files these globs match')
    .option('--token <token>', 'access token for gated or private repos (default: $HF_TOKEN, or the token `huggingface-cli login` saved)')
    .option('--endpoint <url>', 'the hub to pull from (default: $HF_ENDPOINT or https://huggingface.co)')
    .action(async (repo: string, options: { revision: string; to?: string; modelsDir?: string; include?: string[]; exclude?: string[]; token?: string; endpoint?: string }, command: Command) => {
      const destination = resolve(options.to ?? join(modelsDirOf(options.modelsDir), basename(repo)));
      const progress = pullProgress(io, wantsJson(command));
      let pulled;
      try {
        pulled = await pullModel({
          repo,
          revision: options.revision,
          destination,
          endpoint: options.endpoint ?? process.env.HF_ENDPOINT,
          token: await hubToken(options.token),
          ...(options.include === undefined ? {} : { include: options.include }),
          ...(options.exclude === undefined ? {} : { exclude: options.exclude }),
          onProgress: progress.onProgress,
        });
      } catch (error) {
        if (!(error instanceof PullError)) throw error;
        throw new CliError(error.message, { unreachable: EXIT_CODES.unavailable, invalid: EXIT_CODES.invalid, failed: EXIT_CODES.failed }[error.kind]);
      } finally {
        progress.stop();
      }
      // A diffusers folder is read as the pipeline would, so a pull that cannot load says so now
      // (an error, unless --include chose the files: then it is what was asked for).
      let model: Awaited<ReturnType<typeof readModelFolder>> | undefined;
      let incomplete: string | undefined;
      if (await access(join(destination, 'model_index.json')).then(() => true, () => false)) {
        try {
          model = await readModelFolder(destination);
        } catch (error) {
          if (!(error instanceof ModelFolderError)) throw error;
          if (options.include === undefined) throw new CliError(`pulled ${repo} into ${destination}, but it is not a model folder this pipeline loads: ${error.message}`, EXIT_CODES.invalid);
          incomplete = error.message;
        }
      }
      const count = (status: string): number => pulled.files.filter((file) => file.status === status).length;
      const bytes = pulled.files.reduce((sum, file) => sum + file.size, 0);
      report(io, command, { command: 'models pull', ...pulled, modelFolder: model === undefined ? null : { vae: model.vae.kind, imageToImage: model.models.vae_encoder !== undefined, ...exportInfo(model.index) }, ...(incomplete === undefined ? {} : { incomplete }) }, [
        `${destination}: ${pulled.files.length} file(s), ${megabytes(bytes)} from ${repo}@${pulled.revision} (${count('downloaded')} downloaded, ${count('resumed')} resumed, ${count('present')} already here; ${megabytes(pulled.downloadedBytes)} transferred), every file checked against the hub's hash`,
        ...(pulled.skipped.length === 0 ? [] : [`  left out: ${pulled.skipped.join(', ')}`]),
        incomplete !== undefined ? `  not a complete model folder: ${incomplete}` : model === undefined ? '  no model_index.json: not a pipeline model folder (a ControlNet or IP-Adapter folder?)' : `  a model folder: vae ${model.vae.kind}, img2img ${model.models.vae_encoder === undefined ? 'no' : 'yes'}; \`streamdiffusion models verify ${destination}\` loads it`,
      ]);
    });
  return models;
}
