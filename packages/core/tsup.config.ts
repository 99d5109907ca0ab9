import { defineConfig } from 'tsup';

export default defineConfig({
  // The inference worker is its own entry: it is started by file URL, never imported.
  entry: ['src/index.ts', 'src/runtime/inference-worker.ts'],
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: ['onnxruntime-node'],
});
