/** Where the IP-Adapter tests' fixtures are (made by tools/export; see fixtures/README.md). */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** A path from the repository root. */
export const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

/**
 * micro-sd-turbo (64 × 64, 32-wide text embeddings) whose UNet carries a random regular IP-Adapter
 * (4 image tokens), with the adapter's CLIP image encoder and projection. Its other weights are
 * those of fixtures/models/micro-sd-turbo-controlnet.
 */
export const MICRO_IP_MODEL = fromRoot('fixtures/models/micro-sd-turbo-ipadapter');
/** A random plus adapter (16 tokens through a resampler) for the same UNet: it shares the regular adapter's attention weights. */
export const MICRO_PLUS = fromRoot('fixtures/ip-adapters/micro-plus');
/** The UNet of MICRO_IP_MODEL exported with the ControlNet residual inputs as well (same weights). */
export const MICRO_IP_CONTROLNET_UNET = fromRoot('fixtures/ip-adapters/micro-regular-controlnet-unet');
/** micro-sd-turbo with the residual inputs only (the ControlNet fixtures' model). */
export const MICRO_CONTROLNET_MODEL = fromRoot('fixtures/models/micro-sd-turbo-controlnet');
/** A 3-channel ControlNet for micro-sd-turbo. */
export const MICRO_CANNY = fromRoot('fixtures/controlnets/micro-canny');
export const STYLE_IMAGE = fromRoot('fixtures/images/style.png');
export const EXAMPLE_IMAGE = fromRoot('fixtures/images/example.png');

/** The PyTorch goldens of these fixtures: `fixtures/goldens/ip-adapter.json.gz` (gzip-compressed JSON). */
export async function readIpAdapterGoldens(): Promise<unknown> {
  return JSON.parse(gunzipSync(await readFile(fromRoot('fixtures/goldens/ip-adapter.json.gz'))).toString('utf8'));
}

/**
 * A temporary model folder: MICRO_IP_MODEL with the UNet that also has the ControlNet inputs.
 * Returns the folder and a function that removes it.
 */
export async function microIpControlNetModel(): Promise<{ readonly folder: string; readonly remove: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'sd-ip-controlnet-'));
  const folder = join(root, 'model');
  await cp(MICRO_IP_MODEL, folder, { recursive: true });
  await rm(join(folder, 'unet'), { recursive: true });
  await cp(MICRO_IP_CONTROLNET_UNET, join(folder, 'unet'), { recursive: true });
  return { folder, remove: () => rm(root, { recursive: true, force: true }) };
}

/** The fixtures' size (64 × 64 pixels, an 8 × 8 latent). */
export const SIZE = 64;

/** Frame k as the tensor API takes it: planar `[1, 3, 64, 64]` in [-1, 1], squares with edges (for canny) that move with k. */
export function frame(k: number): Float32Array {
  const plane = SIZE * SIZE;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < SIZE; y += 1) {
    for (let x = 0; x < SIZE; x += 1) {
      const inside = ((x + 3 * k) >> 4) % 2 === ((y + k) >> 4) % 2;
      out[y * SIZE + x] = inside ? 0.8 : -0.8;
      out[plane + y * SIZE + x] = inside ? -0.5 : 0.6;
      out[2 * plane + y * SIZE + x] = ((x * 4 + k * 9) % 256) / 127.5 - 1;
    }
  }
  return out;
}

/** The largest absolute difference of two equally long arrays. */
export const maxDifference = (a: Float32Array, b: Float32Array): number => a.reduce((max, value, index) => Math.max(max, Math.abs(value - b[index]!)), 0);
