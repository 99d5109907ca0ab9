/**
 * `build-engines`: the TensorRT engines a config file needs, planned from its settings and the
 * model's ONNX files, built through `trtexec` into the engine store (`buildEngines` of
 * @streamdiffusion/tensorrt, which the ComfyUI Build engines node runs too). `--dry-run` prints the
 * plan and the trtexec command lines without building (and without needing TensorRT). The plan's
 * flags are generated from `enginePlanOptionsSchema`.
 */
import { resolve } from 'node:path';
import { ConfigError, InvalidArgumentError, loadConfig, resolveConfigModelPath } from '@streamdiffusion/core';
import {
  buildEngines,
  createEngineStore,
  describeBuildReport,
  enginePlanOptionsSchema,
  GpuNotFoundError,
  ipAdapterImageTokensOf,
  lorasFromConfig,
  planEngines,
  TensorrtPythonNotFoundError,
  TrtexecNotFoundError,
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

/** `--store`, shared with `engines list|prune`: createEngineStore's own default when absent. */
export const STORE_OPTION = ['--store <folder>', 'the engine store (default: $STREAMDIFFUSION_ENGINE_DIR or ~/.cache/streamdiffusion/engines)'] as const;

export function buildEnginesCommand(io: Io): Command {
  const command = new Command('build-engines')
    .description(
      'Plan and build the TensorRT engines a config needs (UNet, VAE encoder/decoder, each ControlNet) with trtexec, into the engine store, each with an EPContext wrapper model for onnxruntime. --dry-run prints the plan and the trtexec commands only. Exit code 4 when trtexec (TensorRT) is not installed.',
    )
    .requiredOption('--config <file>', 'the config file (YAML or JSON, the Python forks’ format)')
    .option(...STORE_OPTION)
    .option('--models-dir <folder>', 'folder of named models, for model_id and ControlNets that are not paths')
    .option('--dynamic', 'shorthand for --resolution dynamic')
    .option('--static', 'shorthand for --resolution static');
  for (const option of commanderOptions(PLAN_FLAGS)) command.addOption(option);
  return command
    .option('--trtexec <path>', 'the trtexec to run (default: trtexec on PATH)')
    .option('--refit', 'build refittable engines (weights can be swapped without a rebuild); the config’s LoRAs are then refitted into the UNet engine')
    .option('--python <path>', 'the Python with TensorRT’s package, for refits (default: $STREAMDIFFUSION_PYTHON or python3)')
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
      let loras;
      try {
        const loaded = await loadConfig(resolve(String(options.config)), { wrapperParameters: WRAPPER_CONFIG_FIELDS, ...(modelsDir === undefined ? {} : { modelsDir }) });
        const entries = (loaded.config.controlnets ?? []) as readonly { readonly model_id: string }[];
        const controlnets = await Promise.all(entries.map((entry, index) => resolveConfigModelPath(loaded, entry.model_id, { keyPath: ['controlnets', index, 'model_id'], file: true, ...(modelsDir === undefined ? {} : { modelsDir }) })));
        loras = await lorasFromConfig(loaded, modelsDir === undefined ? {} : { modelsDir });
        const imageTokens = ipAdapterImageTokensOf(((loaded.config.ipadapters ?? []) as readonly { readonly type?: string }[])[0]?.type);
        plan = await planEngines({
          config: loaded.config,
          model: loaded.modelFolder,
          controlnets,
          ...(imageTokens === undefined ? {} : { ipAdapterImageTokens: imageTokens }),
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

      const store = createEngineStore({ folder: options.store as string | undefined });
      const quiet = wantsJson(self);
      let result;
      try {
        result = await buildEngines({
          plan,
          store,
          ...(typeof options.trtexec === 'string' ? { trtexec: options.trtexec } : {}),
          ...(options.refit === true ? { refittable: true } : {}),
          loras,
          ...(typeof options.python === 'string' ? { python: options.python } : {}),
          ...(workspaceMiB === undefined ? {} : { workspaceMiB }),
          dryRun: options.dryRun === true,
          ...(quiet ? {} : { onProgress: (line: string) => io.stderr(`${line}\n`) }),
        });
      } catch (error) {
        if (error instanceof TrtexecNotFoundError || error instanceof GpuNotFoundError || error instanceof TensorrtPythonNotFoundError) throw new CliError(error.message, EXIT_CODES.unavailable);
        throw error;
      }
      report(io, self, { command: 'build-engines', ...result }, describeBuildReport(result));
    });
}
