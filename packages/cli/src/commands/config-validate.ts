/** `config validate <file>`: checks a config file as the pipeline would read it, with every warning and its line. */
import { resolve } from 'node:path';
import { ConfigError, loadConfig } from '@streamdiffusion/core';
import { Command } from 'commander';
import { CliError, EXIT_CODES, report, type Io } from '../io.js';
import { WRAPPER_CONFIG_FIELDS } from '../pipeline-options.js';

export function configCommand(io: Io): Command {
  const config = new Command('config').description('Work with config files (the Python forks’ YAML/JSON format).');
  config
    .command('validate')
    .description('Check a config file: keys, values, the model folder it names; warnings for keys that are not honoured.')
    .argument('<file>', 'a .yaml, .yml or .json config')
    .option('--models-dir <folder>', 'folder of named models, for a model_id that is not a path')
    .action(async (file: string, options: { modelsDir?: string }, command: Command) => {
      try {
        const loaded = await loadConfig(resolve(file), { wrapperParameters: WRAPPER_CONFIG_FIELDS, ...(options.modelsDir === undefined ? {} : { modelsDir: resolve(options.modelsDir) }) });
        report(
          io,
          command,
          { command: 'config validate', file: loaded.file, modelFolder: loaded.modelFolder, warnings: loaded.warnings.map(({ kind, key, line, message }) => ({ kind, key, line, message })) },
          [...loaded.warnings.map((warning) => `warning: ${warning.message}`), `${loaded.file}: valid (model ${loaded.modelFolder}${loaded.warnings.length === 0 ? '' : `; ${loaded.warnings.length} warning${loaded.warnings.length === 1 ? '' : 's'}`})`],
        );
      } catch (error) {
        if (error instanceof ConfigError) throw new CliError(error.message, EXIT_CODES.invalid);
        throw error;
      }
    });
  return config;
}
