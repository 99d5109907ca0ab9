/**
 * Writes the node pack: the generated Python (nodes, `__init__.py`, `pyproject.toml`), the
 * hand-written runtime module, the `/object_info` entries ComfyUI should show, and the sidecar
 * bundled with esbuild into one ESM file (its native packages, onnxruntime-node and sharp, listed
 * in `sidecar/package.json` for `npm install`, which `streamdiffusion comfy install` runs).
 */
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RUNTIME_FILES } from '@streamdiffusion/tensorrt';
import { nodeCatalogue } from '../catalogue/node-catalogue.js';
import { expectedObjectInfo } from '../catalogue/object-info.js';
import { schemaHash } from '../catalogue/schema-hash.js';
import { findPackage, packageRoot, sidecarNativePackage } from './package-paths.js';
import { renderInitPy, renderNodesPy, renderPyproject, type PackMetadata } from './render-python.js';
import { apiWorkflowSchema, COMFY_CORE_NODES, toUiWorkflow, type NodeInfo } from '../workflows/ui-workflow.js';

/** The folder name ComfyUI loads the pack under (custom_nodes/<name>). */
export const PACK_NAME = 'streamdiffusion_nodes';

export interface GenerateOptions {
  /** Bundle the sidecar into sidecar/ (default true; the golden-file tests leave it out). */
  readonly bundleSidecar?: boolean;
  readonly log?: (line: string) => void;
}

export interface GeneratedPack {
  readonly dir: string;
  readonly schemaHash: string;
  /** The files written, relative to dir. */
  readonly files: readonly string[];
}

/** Bundles the sidecar (and core's inference worker beside it) into `<dir>/sidecar`. */
async function bundleSidecar(dir: string, root: string): Promise<string[]> {
  const { build } = await import('esbuild');
  const fromSource = existsSync(join(root, 'src', 'sidecar', 'main.ts'));
  const entry = fromSource ? join(root, 'src', 'sidecar', 'main.ts') : join(root, 'dist', 'sidecar.js');
  const conditions = fromSource ? ['@streamdiffusion/source'] : [];
  // Core's inference worker is bundled beside the sidecar, where core's runtime looks for it.
  const core = findPackage(root, '@streamdiffusion/core');
  const worker = fromSource ? join(core, 'src', 'runtime', 'inference-worker.ts') : join(core, 'dist', 'runtime', 'inference-worker.js');
  if (!existsSync(worker)) throw new Error(`core's inference worker is not at ${worker}`);
  await build({
    entryPoints: { sidecar: entry, 'inference-worker': worker },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outdir: join(dir, 'sidecar'),
    outExtension: { '.js': '.mjs' },
    conditions,
    external: ['onnxruntime-node', 'sharp'],
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  // The runtime looks for its worker as inference-worker.js beside itself.
  await cp(join(dir, 'sidecar', 'inference-worker.mjs'), join(dir, 'sidecar', 'inference-worker.js'));
  // What @streamdiffusion/tensorrt reads at run time (the ONNX schema of the LoRA merge, the refit script), beside the code.
  const tensorrt = findPackage(root, '@streamdiffusion/tensorrt');
  for (const file of RUNTIME_FILES) await cp(join(tensorrt, file), join(dir, 'sidecar', file));
  const versionOf = async (name: string): Promise<string> => (JSON.parse(await readFile(join(sidecarNativePackage(name), 'package.json'), 'utf8')) as { version: string }).version;
  const manifest = {
    name: 'streamdiffusion-comfy-sidecar',
    private: true,
    type: 'module',
    description: 'The StreamDiffusion sidecar for the ComfyUI nodes (bundled); its native packages are installed here.',
    dependencies: { 'onnxruntime-node': await versionOf('onnxruntime-node'), sharp: await versionOf('sharp') },
  };
  await writeFile(join(dir, 'sidecar', 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // onnxruntime-node must not try NuGet when it is installed here.
  await writeFile(join(dir, 'sidecar', '.npmrc'), 'onnxruntime-node-install=skip\n');
  return ['sidecar/sidecar.mjs', 'sidecar/inference-worker.mjs', 'sidecar/inference-worker.js', ...RUNTIME_FILES.map((file) => `sidecar/${file}`), 'sidecar/package.json', 'sidecar/.npmrc'];
}

/** Writes the pack into `dir`. */
export async function generatePack(dir: string, options: GenerateOptions = {}): Promise<GeneratedPack> {
  const root = packageRoot();
  const catalogue = nodeCatalogue();
  const hash = schemaHash(catalogue);
  const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const metadata: PackMetadata = {
    name: 'streamdiffusion-nodes',
    version: version === '0.0.0' ? '0.1.0' : version,
    description: 'StreamDiffusion real-time img2img for ComfyUI, run by a Node.js sidecar (ONNX Runtime: CPU, WebGPU, CUDA); nodes generated from the pipeline’s schemas.',
    repository: 'https://github.com/streamdiffusion-ts/streamdiffusion-ts',
    publisherId: 'streamdiffusion-ts',
  };
  await mkdir(dir, { recursive: true });
  const objectInfo = Object.fromEntries(catalogue.map((node) => [node.id, expectedObjectInfo(node, PACK_NAME)]));
  const written: Record<string, string> = {
    '__init__.py': renderInitPy(hash),
    'nodes.py': renderNodesPy(catalogue, hash),
    'pyproject.toml': renderPyproject(metadata, hash),
    'object_info.json': `${JSON.stringify(objectInfo, null, 2)}\n`,
    'streamdiffusion_runtime.py': await readFile(join(root, 'python', 'streamdiffusion_runtime.py'), 'utf8'),
  };
  // The example workflows, in the editor's format, as the pack's templates (ComfyUI lists example_workflows/).
  const infos: Record<string, NodeInfo> = { ...COMFY_CORE_NODES, ...objectInfo };
  for (const file of (await readdir(join(root, 'workflows'))).filter((name) => name.endsWith('.api.json')).sort()) {
    const api = apiWorkflowSchema.parse(JSON.parse(await readFile(join(root, 'workflows', file), 'utf8')));
    written[`example_workflows/${file.replace(/\.api\.json$/, '.json')}`] = `${JSON.stringify(toUiWorkflow(api, infos), null, 2)}\n`;
  }
  await mkdir(join(dir, 'example_workflows'), { recursive: true });
  for (const [name, text] of Object.entries(written)) await writeFile(join(dir, name), text);
  const files = Object.keys(written);
  if (options.bundleSidecar !== false) {
    options.log?.('bundling the sidecar…');
    files.push(...(await bundleSidecar(dir, root)));
  }
  return { dir, schemaHash: hash, files };
}
