/** `serve`: the WebSocket server the demo talks to (see src/server.ts for the protocol), until Ctrl-C. */
import { Command } from 'commander';
import { integerFlag, type Io } from '../io.js';
import { openModel, withPipelineFlags } from '../pipeline-options.js';
import { startServer } from '../server.js';

export function serveCommand(io: Io): Command {
  return withPipelineFlags(
    new Command('serve')
      .description('Serve the pipeline over WebSocket (ws://host:port/stream): frames in, frames out, live parameter updates; one pipeline per client.')
      .option('--host <host>', 'address to listen on', '127.0.0.1')
      .option('--port <port>', 'port to listen on (0: any free one)', '8787')
      .option('--static <folder>', 'serve this folder over HTTP at the same address (the demo page: apps/demo/public)'),
  ).action(async (options: Record<string, unknown>) => {
    const port = integerFlag('port', options.port, 0, 65535);
    const opened = await openModel(options);
    try {
      const staticDir = typeof options.static === 'string' ? options.static : undefined;
      const server = await startServer(opened, { host: String(options.host), port, ...(staticDir === undefined ? {} : { staticDir }), log: (line) => io.stderr(`${line}\n`) });
      io.stdout(`serving ${opened.config.model_id} on ${opened.runtime.device.device}: ${server.url}\n`);
      if (staticDir !== undefined) io.stdout(`open ${server.url.replace(/^ws/, 'http').replace(/\/stream$/, '/')} in a browser\n`);
      await new Promise<void>((done) => {
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      await server.close();
    } finally {
      await opened.close();
    }
  });
}
