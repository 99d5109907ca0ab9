import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', sidecar: 'src/sidecar/main.ts' },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: ['@streamdiffusion/core', '@streamdiffusion/controlnet', '@streamdiffusion/ip-adapter', 'esbuild'],
});
