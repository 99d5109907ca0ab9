// Smoke test for the ComfyUI harness: start ComfyUI with an empty custom_nodes folder,
// run LoadImage -> SaveImage, check the PNG written, stop. Usage:
//   COMFYUI_DIR=/work/main/.vendor/ComfyUI node smoke.mjs [--verbose]
/* global fetch */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import zlib from 'node:zlib';
import { runPrompt, startComfyUI } from './start-comfyui.mjs';

// --- tiny PNG encoder (solid colour, 8-bit RGB), test tooling only ---
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function solidPng(width, height, [r, g, b]) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  const row = Buffer.alloc(1 + width * 3); // filter byte 0 + pixels
  for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const verbose = process.argv.includes('--verbose');
const emptyCustomNodes = await mkdtemp(path.join(os.tmpdir(), 'comfyui-smoke-nodes-'));
let comfy;
try {
  const t0 = performance.now();
  comfy = await startComfyUI({ customNodesDir: emptyCustomNodes, log: verbose });
  const startupS = (performance.now() - t0) / 1000;
  console.log(`ComfyUI up at ${comfy.url} (pid ${comfy.process.pid}) after ${startupS.toFixed(1)} s`);

  const stats = await (await fetch(`${comfy.url}/system_stats`)).json();
  console.log(
    `system_stats: comfyui_version=${stats.system?.comfyui_version} python=${stats.system?.python_version?.split(' ')[0]} ` +
      `pytorch=${stats.system?.pytorch_version} devices=${(stats.devices ?? []).map((d) => d.type).join(',')}`,
  );

  const objectInfo = await (await fetch(`${comfy.url}/object_info`)).json();
  console.log(`object_info: ${Object.keys(objectInfo).length} node types`);
  assert.ok(objectInfo.LoadImage && objectInfo.SaveImage, 'LoadImage/SaveImage missing from /object_info');

  const log = comfy.logs();
  const extraPaths = log.split('\n').filter((l) => l.includes('Adding extra search path custom_nodes'));
  console.log(`custom_nodes search paths from extra_model_paths.yaml: ${extraPaths.length ? '' : '(none)'}`);
  for (const l of extraPaths) console.log(`  ${l.trim()}`);
  const importBlock = log.match(/Import times for custom nodes:\n([\s\S]*?)\n\s*\n/);
  if (importBlock) {
    console.log('custom node folders ComfyUI reported loading:');
    for (const l of importBlock[1].split('\n').filter(Boolean)) console.log(`  ${l.trim()}`);
  } else {
    console.log('custom node folders ComfyUI reported loading: none (no "Import times for custom nodes" block)');
  }
  const failedExtras = [...log.matchAll(/IMPORT FAILED: (\S+)/g)].map((m) => m[1]);
  if (failedExtras.length) console.log(`comfy_extras not importable here (expected, missing deps): ${failedExtras.join(', ')}`);

  await writeFile(path.join(comfy.inputDir, 'smoke.png'), solidPng(64, 64, [200, 40, 120]));

  const prompt = {
    1: { class_type: 'LoadImage', inputs: { image: 'smoke.png' } },
    2: { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'smoke' } },
  };
  const t1 = performance.now();
  const result = await runPrompt(comfy.url, prompt, { timeoutMs: 60_000 });
  const promptS = (performance.now() - t1) / 1000;
  assert.equal(result.status, 200, `POST /prompt: HTTP ${result.status} ${JSON.stringify(result.error)}`);
  assert.deepEqual(result.node_errors, {}, `node_errors: ${JSON.stringify(result.node_errors)}`);
  assert.equal(result.error, null);
  assert.equal(result.history?.status?.status_str, 'success', `history status: ${JSON.stringify(result.history?.status)}`);

  const images = result.history.outputs?.['2']?.images ?? [];
  assert.equal(images.length, 1, `SaveImage outputs: ${JSON.stringify(result.history.outputs)}`);
  const outFile = path.join(comfy.outputDir, images[0].subfolder ?? '', images[0].filename);
  const png = await readFile(outFile);
  assert.ok(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'not a PNG');
  assert.equal(png.readUInt32BE(16), 64, 'output width');
  assert.equal(png.readUInt32BE(20), 64, 'output height');
  console.log(`prompt ${result.prompt_id}: success in ${promptS.toFixed(2)} s -> ${outFile} (${png.length} bytes)`);

  const exit = await comfy.stop();
  comfy = undefined;
  console.log(`stopped ComfyUI (${JSON.stringify(exit)})`);
  console.log(`SMOKE OK  startup=${startupS.toFixed(1)}s  prompt=${promptS.toFixed(2)}s`);
} catch (err) {
  console.error('SMOKE FAILED:', err?.stack ?? err);
  if (comfy) console.error(`--- ComfyUI log tail ---\n${comfy.logs().split('\n').slice(-60).join('\n')}`);
  process.exitCode = 1;
} finally {
  if (comfy) await comfy.stop();
  await rm(emptyCustomNodes, { recursive: true, force: true });
}
