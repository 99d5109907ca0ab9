/** Files shipped beside the package's code (proto/, python/), found from src/… or dist/ alike. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The files this package reads at run time from beside its code: a bundle of it must carry them (at these paths beside or above the bundle). */
export const RUNTIME_FILES = Object.freeze(['proto/onnx.proto', 'python/refit_engine.py'] as const);

/** The absolute path of `relative` in the package root (the first folder above this module that has it). */
export function packageFile(relative: string): string {
  for (let folder = dirname(fileURLToPath(import.meta.url)); ; folder = dirname(folder)) {
    const candidate = join(folder, relative);
    if (existsSync(candidate)) return candidate;
    if (dirname(folder) === folder) throw new Error(`@streamdiffusion/tensorrt: ${relative} not found beside the package`);
  }
}
