/**
 * `build-engines`: the TensorRT engines a config file needs, planned from its settings and the
 * model's ONNX files, built through `trtexec` into the engine store. `--dry-run` prints the plan and
 * the trtexec command lines without building (and without needing TensorRT). The plan's flags are
 * generated from `enginePlanOptionsSchema`.
 */
import { resolve } from 'node:path';
import { ConfigError, InvalidArgumentError, loadConfig, resolveConfigModelPath } from '@streamdiffusion/core';
import {
  buildEngine,
  createEngineStore,
  defaultEngineStoreFolder,
  enginePlanOptionsSchema,
  engineKey,
  findTrtexec,
  hashFile,
  planEngines,
  probeComputeCapability,
  probeTensorrtVersion,
  trtexecArguments,
  TrtexecNotFoundError,
  writeEpContextModel,
  type BuildEnvironment,
  type PlannedEngine,
} from '@streamdiffusion/tensorrt';
import { Command } from 'commander';
import type { z } from 'zod';
import { commanderOptions, flagValues, schemaFlags } from '../flags.js';
import { CliError, EXIT_CODES, integerFlag, report, wantsJson, type Io } from '../io.js';
import { WRAPPER_CONFIG_FIELDS } from '../pipeline-options.js';

const snake = (key: string): string => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
const camel = (key: string): string => key.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());

/** The plan options' schema fields under snake_case keys, so the generated flags read `--min-resolution`. */
const PLAN_FLAGS = schemaFlags(Object.fromEntries(Object.entries(enginePlanOptionsSchema.shape).map(([key, field]) => [snake(key), field as z.ZodType])));

/** The store folder: --store, else $STREAMDIFFUSION_ENGINE_DIR, else ~/.cache/streamdiffusion/engines. */
export const storeFolderOf = (given: string | undefined): string => (given === undefined ? defaultEngineStoreFolder() : resolve(given));

/** `--flag value` words quoted for a shell where needed. */
const shellLine = (words: readonly string[]): string => words.map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`)).join(' ');

const shapes = (engine: PlannedEngine): string[] => engine.inputs.map((input) => `    ${input.name}: min ${input.min.join('×')}, opt ${input.opt.join('×')}, max ${input.max.join('×')}`);

export function buildEnginesCommand(io: Io): Command {
  const command = new Command('build-engines')
    .description(
      'Plan and build the TensorRT engines a config needs (UNet, VAE encoder/decoder, each ControlNet) with trtexec, into the engine store, each with an EPContext wrapper model for onnxruntime. --dry-run prints the plan and the trtexec commands only. Exit code 4 when trtexec (TensorRT) is not installed.',
    )
    .requiredOption('--config <file>', 'the config file (YAML or JSON, the Python forks’ format)')
    .option('--store <folder>', 'the engine store (default: $STREAMDIFFUSION_ENGINE_DIR or ~/.cache/streamdiffusion/engines)')
    .option('--models-dir <folder>', 'folder of named models, for model_id and ControlNets that are not paths')
    .option('--dynamic', 'shorthand for --resolution dynamic')
    .option('--static', 'shorthand for --resolution static');
  for (const option of commanderOptions(PLAN_FLAGS)) command.addOption(option);
  return command
    .option('--trtexec <path>', 'the trtexec to run (default: trtexec on PATH)')
    .option('--refit', 'build refittable engines (weights can be swapped without a rebuild)')
    .option('--workspace <MiB>', 'the builder’s workspace memory limit in MiB')
    .option('--dry-run', 'print the plan and the trtexec commands; build nothing')
    .action(async (options: Record<string, unknown>, self: Command) => {
      if (options.dynamic === true && options.static === true) throw new CliError('--dynamic and --static: give one of them', EXIT_CODES.usage);
      const values = Object.fromEntries(Object.entries(flagValues(PLAN_FLAGS, options)).map(([key, value]) => [camel(key), value]));
      if (options.dynamic === true) values.resolution = 'dynamic';
      if (options.static === true) values.resolution = 'static';
      const workspaceMiB = options.workspace === undefined ? undefined : integerFlag('workspace', options.workspace, 1);
      const modelsDir = typeof options.modelsDir === 'string' ? resolve(options.modelsDir) : undefined;

      let plan;
      try {
        const loaded = await loadConfig(resolve(String(options.config)), { wrapperParameters: WRAPPER_CONFIG_FIELDS, ...(modelsDir === undefined ? {} : { modelsDir }) });
        const entries = (loaded.config.controlnets ?? []) as readonly { readonly model_id: string }[];
        const controlnets = await Promise.all(entries.map((entry, index) => resolveConfigModelPath(loaded, entry.model_id, { keyPath: ['controlnets', index, 'model_id'], file: true, ...(modelsDir === undefined ? {} : { modelsDir }) })));
        const adapterType = ((loaded.config.ipadapters ?? []) as readonly { readonly type?: string }[])[0]?.type;
        plan = await planEngines({
          config: loaded.config,
          model: loaded.modelFolder,
          controlnets,
          ...(adapterType === 'regular' ? { ipAdapterImageTokens: 4 } : adapterType === 'plus' ? { ipAdapterImageTokens: 16 } : {}),
          options: values,
        });
      } catch (error) {
        if (error instanceof ConfigError) throw new CliError(error.message, EXIT_CODES.invalid);
        // Name the flag rather than the option's field (minResolution → --min-resolution).
        if (error instanceof InvalidArgumentError && Object.hasOwn(enginePlanOptionsSchema.shape, error.field)) {
          throw new CliError(error.message.replace(`${error.field}:`, `--${snake(error.field).replaceAll('_', '-')}:`), EXIT_CODES.invalid);
        }
        throw error;
      }

      const store = createEngineStore({ folder: storeFolderOf(options.store as string | undefined) });
      let trtexec: string | undefined;
      try {
        trtexec = await findTrtexec(typeof options.trtexec === 'string' ? { path: options.trtexec } : {});
      } catch (error) {
        if (!(error instanceof TrtexecNotFoundError)) throw error;
        if (options.dryRun !== true) throw new CliError(error.message, EXIT_CODES.unavailable);
      }
      let environment: BuildEnvironment | undefined;
      if (trtexec !== undefined) {
        const computeCapability = await probeComputeCapability();
        if (computeCapability === undefined && options.dryRun !== true) {
          throw new CliError('cannot tell the GPU’s compute capability: `nvidia-smi --query-gpu=compute_cap` gave no answer (is an NVIDIA GPU and driver present?)', EXIT_CODES.unavailable);
        }
        if (computeCapability !== undefined) environment = { computeCapability, tensorrtVersion: await probeTensorrtVersion(trtexec) };
      }
      const settings = { ...(options.refit === true ? { refittable: true } : {}), ...(workspaceMiB === undefined ? {} : { workspaceMiB }) };

      if (options.dryRun === true) {
        const engines = await Promise.all(
          plan.engines.map(async (engine) => {
            const key = environment === undefined ? null : engineKey({ onnxSha256: await hashFile(engine.onnx), loraHash: null, precision: engine.precision, inputs: engine.inputs, ...environment, ...settings });
            const stored = key === null ? undefined : await store.get(key);
            const enginePath = `${store.folder}/.tmp-${key ?? '<key>'}/engine.plan`;
            const timingCache = environment === undefined ? `${store.folder}/timing-<gpu>-<tensorrt>.cache` : store.timingCachePath(environment);
            const commandLine = [trtexec ?? 'trtexec', ...trtexecArguments({ engine, enginePath, timingCache, ...settings })];
            return { ...engine, key, stored: stored !== undefined, command: commandLine };
          }),
        );
        report(io, self, { command: 'build-engines', dryRun: true, store: store.folder, trtexec: trtexec ?? null, environment: environment ?? null, options: plan.options, engines }, [
          `plan for ${plan.modelFolder} (${plan.options.resolution} resolution, ${plan.options.precision}); store ${store.folder}`,
          ...(trtexec === undefined ? ['trtexec: not found (install TensorRT to build; engine keys need its version and the GPU)'] : []),
          ...engines.flatMap((engine) => [
            `${engine.name}: ${engine.onnx}${engine.variant === undefined ? '' : ` (ControlNet inputs ${engine.variant.controlNet ? 'yes' : 'no'}, IP-Adapter ${engine.variant.ipAdapter ? 'yes' : 'no'})`}, batch ${engine.batch.min}–${engine.batch.max} (opt ${engine.batch.opt})${engine.stored ? ', already stored' : ''}`,
            ...shapes(engine),
            `  ${shellLine(engine.command)}`,
          ]),
        ]);
        return;
      }

      const quiet = wantsJson(self);
      const built = [];
      for (const engine of plan.engines) {
        const result = await buildEngine({
          engine,
          store,
          trtexec: trtexec!,
          environment: environment!,
          ...settings,
          verbose: !quiet,
          onWait: (holder) => io.stderr(`${engine.name}: waiting for ${holder === undefined ? 'another process' : `process ${holder.pid} on ${holder.host}`} building the same engine\n`),
          onProgress: (progress) => {
            if (quiet) return;
            if (progress.phase === 'layer') {
              if (progress.layersTimed % 50 === 1) io.stderr(`${engine.name}: timing layer ${progress.layersTimed} (${progress.layer})\n`);
            } else {
              io.stderr(`${engine.name}: ${progress.phase}${progress.phase === 'built' && progress.seconds !== undefined ? ` in ${progress.seconds} s` : ''}\n`);
            }
          },
        });
        const wrapper = `${result.folder}/model_ctx.onnx`;
        await writeEpContextModel({ onnx: engine.onnx, engine: result.enginePath, output: wrapper, computeCapability: environment!.computeCapability });
        built.push({ name: engine.name, key: result.key, built: result.built, enginePath: result.enginePath, wrapper });
      }
      report(io, self, { command: 'build-engines', dryRun: false, store: store.folder, environment, engines: built }, [
        ...built.map((engine) => `${engine.name}: ${engine.built ? 'built' : 'already stored'} → ${engine.enginePath} (wrapper ${engine.wrapper})`),
        `${built.filter((engine) => engine.built).length} engine(s) built, ${built.filter((engine) => !engine.built).length} already stored in ${store.folder}`,
      ]);
    });
}
