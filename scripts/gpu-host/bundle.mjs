#!/usr/bin/env node
// Bundles what a GPU host run needs into .gpuhost-app: our scripts as single ESM files (the
// inference worker beside them), plus onnxruntime-node with only its linux-x64 binaries.
//   node scripts/gpu-host/bundle.mjs && ../shared/gpu-host/pack.sh .gpuhost .gpuhost-app [more paths]
// On the host: source .gpuhost/enter.sh && node .gpuhost-app/compare-goldens.mjs --device webgpu
import { build } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const out = '.gpuhost-app';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: {
    'compare-goldens': 'packages/core/scripts/compare-goldens.ts',
    'compare-stream-goldens': 'packages/core/scripts/compare-stream-goldens.ts',
    img2img: 'packages/core/examples/img2img.ts',
    'inspect-model': 'packages/core/examples/inspect-model.ts',
    bench: 'packages/core/scripts/bench.ts',
    'bench-controlnet': 'packages/controlnet/scripts/bench.ts',
    'bench-ip-adapter': 'packages/ip-adapter/scripts/bench.ts',
    'bench-lora': 'packages/tensorrt/scripts/bench-lora.ts',
    'inference-worker': 'packages/core/src/runtime/inference-worker.ts',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outdir: out,
  outExtension: { '.js': '.mjs' },
  conditions: ['@streamdiffusion/source'],
  // Native packages travel as packages (below), not bundled.
  external: ['onnxruntime-node', 'sharp'],
  // Bundled CommonJS dependencies call require(); give ESM output one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});
// The runtime looks for the worker as inference-worker.js beside itself.
cpSync(join(out, 'inference-worker.mjs'), join(out, 'inference-worker.js'));
// What @streamdiffusion/tensorrt reads at run time (its RUNTIME_FILES: the ONNX schema of the LoRA merge, the refit script).
for (const folder of ['proto', 'python']) cpSync(join('packages/tensorrt', folder), join(out, folder), { recursive: true });

const require = createRequire(join(process.cwd(), 'packages/core/package.json'));
const ortNode = dirname(require.resolve('onnxruntime-node/package.json'));
// onnxruntime-common exports no ./package.json: find its folder beside onnxruntime-node's.
const ortCommon = join(dirname(ortNode), 'onnxruntime-common');
const modules = join(out, 'node_modules');
cpSync(ortNode, join(modules, 'onnxruntime-node'), {
  recursive: true,
  dereference: true,
  // Only the linux-x64 binaries travel.
  filter: (path) => !/\/bin\/napi-v6\/./.test(path) || /\/bin\/napi-v6\/linux(\/x64(\/|$)|$)/.test(path),
});
cpSync(ortCommon, join(modules, 'onnxruntime-common'), { recursive: true, dereference: true });
// sharp with its dependencies and only the linux-x64 libvips: pnpm keeps them side by side.
const sharpFolder = dirname(require.resolve('sharp/package.json'));
for (const entry of readdirSync(dirname(sharpFolder))) {
  const from = join(dirname(sharpFolder), entry);
  if (entry === '@img') {
    for (const scoped of readdirSync(from).filter((name) => !/darwin|win32|arm|wasm|musl|s390|ppc|riscv/.test(name))) {
      cpSync(join(from, scoped), join(modules, '@img', scoped), { recursive: true, dereference: true });
    }
  } else {
    cpSync(from, join(modules, entry), { recursive: true, dereference: true });
  }
}
console.log(`bundled into ${out}`);
