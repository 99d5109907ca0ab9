/** `engines list` and `engines prune`: what the engine store holds, and removing what is stale, old or everything. */
import { createEngineStore, type StoredEngine } from '@streamdiffusion/tensorrt';
import { Command } from 'commander';
import { CliError, EXIT_CODES, report, type Io } from '../io.js';
import { STORE_OPTION } from './build-engines.js';

const megabytes = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function describe(engine: StoredEngine): string {
  const meta = engine.meta;
  const what = meta === undefined ? 'unreadable' : `${meta.name} (${meta.precision}, TensorRT ${meta.tensorrtVersion}, compute ${meta.computeCapability}, ${megabytes(meta.engineBytes)}, ${meta.createdAt})`;
  return `${engine.key}  ${what}${engine.stale.length === 0 ? '' : `  stale: ${engine.stale.map((stale) => stale.message).join('; ')}`}`;
}

const summary = (engine: StoredEngine) => ({ key: engine.key, folder: engine.folder, name: engine.meta?.name ?? null, onnx: engine.meta?.onnx.path ?? null, createdAt: engine.meta?.createdAt ?? null, stale: engine.stale });

export function enginesCommand(io: Io): Command {
  const engines = new Command('engines').description('The TensorRT engine store: list the engines, prune the stale or old ones.');
  engines
    .command('list')
    .description('List the stored engines, marking the stale ones (their ONNX file changed or is gone).')
    .option(...STORE_OPTION)
    .action(async (options: { store?: string }, command: Command) => {
      const store = createEngineStore({ folder: options.store });
      const found = await store.list();
      report(io, command, { command: 'engines list', store: store.folder, engines: found.map(summary) }, [...found.map(describe), `${found.length} engine(s) in ${store.folder}`]);
    });
  engines
    .command('prune')
    .description('Remove stored engines: the stale ones, those older than some days, or all. Engines being built are left alone.')
    .option(...STORE_OPTION)
    .option('--stale', 'engines whose ONNX file changed or is gone')
    .option('--older-than <days>', 'engines stored more than this many days ago')
    .option('--all', 'every engine')
    .action(async (options: { store?: string; stale?: boolean; olderThan?: string; all?: boolean }, command: Command) => {
      if (options.stale !== true && options.all !== true && options.olderThan === undefined) throw new CliError('engines prune: give --stale, --older-than <days> or --all', EXIT_CODES.usage);
      const days = options.olderThan === undefined ? undefined : Number(options.olderThan);
      if (days !== undefined && !(Number.isFinite(days) && days >= 0)) throw new CliError(`--older-than: expected a number of days ≥ 0, got ${JSON.stringify(options.olderThan)}`, EXIT_CODES.usage);
      const store = createEngineStore({ folder: options.store });
      const removed = await store.prune({ stale: options.stale === true, all: options.all === true, ...(days === undefined ? {} : { olderThanDays: days }) });
      report(io, command, { command: 'engines prune', store: store.folder, removed: removed.map(summary) }, [...removed.map((engine) => `removed ${describe(engine)}`), `${removed.length} engine(s) removed from ${store.folder}`]);
    });
  return engines;
}
