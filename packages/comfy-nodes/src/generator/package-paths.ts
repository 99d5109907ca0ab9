/**
 * Where this package and the packages the sidecar needs are on disk: this package's root (from
 * src/ or dist/), core (whose inference worker is bundled beside the sidecar), and core's native
 * dependencies, onnxruntime-node and sharp (their versions go into the sidecar's package.json, or
 * they are linked into it).
 */
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This package's root folder (from src/ or dist/). */
export function packageRoot(): string {
  for (let folder = dirname(fileURLToPath(import.meta.url)); ; folder = dirname(folder)) {
    if (existsSync(join(folder, 'python', 'streamdiffusion_runtime.py'))) return folder;
    if (dirname(folder) === folder) throw new Error('@streamdiffusion/comfy-nodes: python/streamdiffusion_runtime.py not found beside the package');
  }
}

/** A package's folder as Node would find it from `from`: the nearest node_modules/<name> upwards. */
export function findPackage(from: string, name: string): string {
  for (let folder = from; ; folder = dirname(folder)) {
    const candidate = join(folder, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate);
    if (dirname(folder) === folder) throw new Error(`${name} not found from ${from}`);
  }
}

/** A native package of the sidecar, as core (which depends on it) finds it. */
export const sidecarNativePackage = (name: string): string => findPackage(findPackage(packageRoot(), '@streamdiffusion/core'), name);
