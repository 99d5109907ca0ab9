import { defineConfig } from 'tsup';

export default defineConfig({
  // The inference worker is its own entry: it is started by file URL, never imported.
  // `test/index` is the `@streamdiffusion/core/test` subpath (the mock wrapper).
  entry: { index: 'src/index.ts', 'test/index': 'src/test/index.ts', 'runtime/inference-worker': 'src/runtime/inference-worker.ts' },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts', 'test/index': 'src/test/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: ['onnxruntime-node'],
});
