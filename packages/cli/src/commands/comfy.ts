/**
 * `comfy generate <dir>` and `comfy install <ComfyUI dir>`: the ComfyUI node pack made from the
 * schemas (@streamdiffusion/comfy-nodes), written to a folder, or installed into a ComfyUI's
 * custom_nodes with the sidecar's native packages (npm, or linked from this installation).
 */
import { resolve } from 'node:path';
import { generatePack, installPack } from '@streamdiffusion/comfy-nodes';
import { Command } from 'commander';
import { report, wantsJson, type Io } from '../io.js';

export function comfyCommand(io: Io): Command {
  const comfy = new Command('comfy').description('The ComfyUI node pack: generate it, or install it into a ComfyUI.');
  const progress = (command: Command) => (line: string) => {
    if (!wantsJson(command)) io.stderr(`comfy: ${line}\n`);
  };

  comfy
    .command('generate')
    .description('Write the node pack (V3 nodes, runtime module, pyproject.toml, the bundled sidecar) into a folder.')
    .argument('<dir>', 'the folder to write (created if missing)')
    .option('--no-sidecar', 'leave the sidecar bundle out (the Python files only)')
    .action(async (dir: string, options: { sidecar: boolean }, command: Command) => {
      const pack = await generatePack(resolve(dir), { bundleSidecar: options.sidecar, log: progress(command) });
      report(io, command, { command: 'comfy generate', ...pack }, [`${pack.dir}: ${pack.files.length} files, schema ${pack.schemaHash}`, ...(options.sidecar ? ['  the sidecar needs onnxruntime-node and sharp: run `npm install` in its sidecar/ folder (or use `comfy install`)'] : [])]);
    });

  comfy
    .command('install')
    .description('Generate the pack into <ComfyUI dir>/custom_nodes/streamdiffusion_nodes and install the sidecar’s packages (needs Node.js 20+ on the ComfyUI machine).')
    .argument('<comfyui>', 'the ComfyUI folder (the one with main.py)')
    .option('--link-modules', 'link this installation’s onnxruntime-node and sharp instead of installing them with npm (no network)')
    .action(async (comfyui: string, options: { linkModules?: boolean }, command: Command) => {
      // Not a ComfyUI folder is a StreamDiffusionError (exit 3); an npm failure exits 1.
      const pack = await installPack(resolve(comfyui), { modules: options.linkModules === true ? 'link' : 'npm', log: progress(command) });
      report(io, command, { command: 'comfy install', ...pack }, [`${pack.dir}: installed (schema ${pack.schemaHash}); restart ComfyUI to load the StreamDiffusion nodes`]);
    });
  return comfy;
}
