import { defineConfig } from 'vitest/config';

// One vitest run covers every package; each package is a project so `--project core` works too.
// The source condition makes packages read each other's `src/` without a build.
export default defineConfig({
  resolve: { conditions: ['@streamdiffusion/source'] },
  ssr: { resolve: { conditions: ['@streamdiffusion/source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'repository', root: '.', include: ['tests/**/*.test.ts'], testTimeout: 60_000 },
      },
      {
        extends: true,
        test: {
          name: 'core',
          root: './packages/core',
          include: ['src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'controlnet',
          root: './packages/controlnet',
          include: ['src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'tensorrt',
          root: './packages/tensorrt',
          include: ['src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'ip-adapter',
          root: './packages/ip-adapter',
          include: ['src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'comfy-nodes',
          root: './packages/comfy-nodes',
          include: ['src/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'cli',
          root: './packages/cli',
          include: ['src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'demo',
          root: './apps/demo',
          include: ['src/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
