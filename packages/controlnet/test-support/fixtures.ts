/** Where the ControlNet tests' fixtures are: the micro model made for ControlNet and its two ControlNets. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** A path from the repository root. */
export const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

/** micro-sd-turbo with the 13 residual inputs on its UNet (64 × 64, 32-wide text embeddings). */
export const MICRO_MODEL = fromRoot('fixtures/models/micro-sd-turbo-controlnet');
/** A 3-channel ControlNet for it (random weights). */
export const MICRO_CANNY = fromRoot('fixtures/controlnets/micro-canny');
/** A 6-channel (TemporalNet layout) ControlNet for it. */
export const MICRO_SIX = fromRoot('fixtures/controlnets/micro-6ch');

/** The diffusers goldens of these fixtures: `fixtures/goldens/controlnet.json.gz` (gzip-compressed JSON). */
export async function readControlNetGoldens(): Promise<unknown> {
  return JSON.parse(gunzipSync(await readFile(fromRoot('fixtures/goldens/controlnet.json.gz'))).toString('utf8'));
}
