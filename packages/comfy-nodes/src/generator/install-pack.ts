/**
 * Installs a generated pack into a ComfyUI: generated into `<ComfyUI>/custom_nodes/<PACK_NAME>`,
 * then the sidecar's native packages (onnxruntime-node, sharp) put beside it, either installed by
 * npm from the registry (`sidecar/package.json`) or linked from this installation (no network).
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StreamDiffusionError } from '@streamdiffusion/core';
import { generatePack, PACK_NAME, type GeneratedPack } from './generate-pack.js';
import { sidecarNativePackage } from './package-paths.js';

/** The sidecar's native packages. */
export const SIDECAR_NATIVE_PACKAGES = Object.freeze(['onnxruntime-node', 'sharp']);

/** Links this installation's native packages into `<pack>/sidecar/node_modules`. */
export async function linkSidecarModules(packDir: string): Promise<void> {
  const modules = join(packDir, 'sidecar', 'node_modules');
  await mkdir(modules, { recursive: true });
  for (const name of SIDECAR_NATIVE_PACKAGES) {
    await rm(join(modules, name), { recursive: true, force: true });
    await symlink(sidecarNativePackage(name), join(modules, name), 'dir');
  }
}

/** Runs `npm install` in `<pack>/sidecar` (onnxruntime-node told not to download from NuGet). */
export function npmInstallSidecar(packDir: string, log: (line: string) => void = () => undefined): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn('npm', ['install', '--omit=dev', '--no-audit', '--no-fund'], { cwd: join(packDir, 'sidecar'), env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of chunk.toString().split('\n').filter((item) => item.trim() !== '')) log(`npm: ${line}`);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) => fail(new Error(`could not run npm to install the sidecar's packages: ${error.message}`)));
    child.on('close', (code) => (code === 0 ? done() : fail(new Error(`npm install in ${join(packDir, 'sidecar')} failed (exit code ${code}): ${output.trim().split('\n').slice(-3).join(' | ')}`))));
  });
}

export interface InstallOptions {
  /** `npm` installs the native packages from the registry; `link` links this installation's. */
  readonly modules: 'npm' | 'link';
  readonly log?: (line: string) => void;
}

/**
 * Generates the pack into a ComfyUI's custom_nodes folder and installs its sidecar's packages.
 * @throws {StreamDiffusionError} (code `not-comfyui`) when `comfyDir` has no main.py.
 */
export async function installPack(comfyDir: string, options: InstallOptions): Promise<GeneratedPack> {
  const customNodes = join(comfyDir, 'custom_nodes');
  if (!(await stat(join(comfyDir, 'main.py')).catch(() => undefined))?.isFile()) throw new StreamDiffusionError({ code: 'not-comfyui', message: `${comfyDir}: not a ComfyUI folder (no main.py)` });
  const dir = join(customNodes, PACK_NAME);
  await rm(dir, { recursive: true, force: true });
  const pack = await generatePack(dir, { ...(options.log === undefined ? {} : { log: options.log }) });
  options.log?.(options.modules === 'link' ? 'linking onnxruntime-node and sharp into the sidecar…' : 'installing onnxruntime-node and sharp for the sidecar (npm)…');
  if (options.modules === 'link') await linkSidecarModules(dir);
  else await npmInstallSidecar(dir, options.log);
  return pack;
}
