/**
 * The foundation's main job: load a model folder on the best device this machine has, say what it
 * picked and why and what the model can do, then run each model once (prompt → text embeddings →
 * one UNet step on a noisy latent → VAE decode) and print timings and value ranges.
 *
 *   pnpm inspect                                  # the tiny bundled model
 *   pnpm inspect -- --model <folder> --device webgpu --prompt "a cat" [--size 512] [--repeat 20]
 *
 * First calls include graph preparation (and shader compilation on a GPU); `--repeat N` runs the UNet
 * and the decoder N more times and prints their median, the warm time.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRuntime, hostTensor, loadModel, type DeviceRequest } from '../src/index.js';

const { values } = parseArgs({
  // `pnpm inspect -- --flag` passes the `--` through.
  args: process.argv.slice(2).filter((argument) => argument !== '--'),
  options: {
    model: { type: 'string', default: fileURLToPath(new URL('../../../fixtures/models/tiny-sd-turbo', import.meta.url)) },
    device: { type: 'string', default: 'auto' },
    prompt: { type: 'string', default: 'a watercolor painting of a lighthouse at dawn' },
    size: { type: 'string', default: '64' },
    repeat: { type: 'string', default: '0' },
  },
});

function summary(values: Float32Array): string {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const value of values) {
    min = Math.min(min, value);
    max = Math.max(max, value);
    sum += value;
  }
  return `[${values.length} values, min ${min.toFixed(3)}, max ${max.toFixed(3)}, mean ${(sum / values.length).toFixed(4)}]`;
}

const timed = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
  const started = performance.now();
  const result = await work();
  console.log(`${label.padEnd(22)} ${(performance.now() - started).toFixed(1).padStart(8)} ms`);
  return result;
};

const runtime = await createRuntime({ device: values.device as DeviceRequest });
console.log(`device: ${runtime.device.device} — ${runtime.device.reason}`);
try {
  const model = await timed('load model folder', () => loadModel({ runtime, folder: values.model }));
  const { capabilities } = model;
  console.log('capabilities:', JSON.stringify(capabilities));
  const size = Number(values.size);
  const latentSize = size / capabilities.vae.spatialFactor;
  const ids = model.prompts.tokenize(values.prompt);
  console.log(`prompt "${values.prompt}" → ${ids.indexOf(model.tokenizer.eosTokenId) + 1} tokens, padded to ${ids.length}`);
  const embeddings = await timed('text encoder', () => model.prompts.encode(values.prompt));
  console.log(`  embeddings [${embeddings.dims.join(', ')}]`, summary(await embeddings.float32()));

  const latent = Float32Array.from({ length: capabilities.latentChannels * latentSize * latentSize }, (_, index) => Math.sin(index * 12.9898) * 0.8);
  const sample = hostTensor(latent, [1, capabilities.latentChannels, latentSize, latentSize]);
  const { out_sample: noise } = await timed('unet (1 step)', () =>
    model.sessions.run('unet', { sample, timestep: hostTensor(new Float32Array([999]), [1]), encoder_hidden_states: embeddings }),
  );
  console.log(`  predicted noise [${noise!.dims.join(', ')}]`, summary(await noise!.float32()));
  // The decoder takes unscaled latents; the noise prediction stands in for one here, kept on the device.
  const { sample: image } = await timed('vae decoder', () => model.sessions.run('vae_decoder', { latent_sample: noise! }, { read: ['sample'] }));
  console.log(`  image [${image!.dims.join(', ')}]`, summary(await image!.float32()));
  const kept = await runtime.stats();
  console.log(`kept on the device for later runs: ${kept.tensors} tensors, ${kept.gpuTensors} of them in GPU memory`);

  const repeat = Number(values.repeat);
  if (repeat > 0) {
    const median = (times: number[]): string => times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!.toFixed(1);
    const unetTimes: number[] = [];
    const decoderTimes: number[] = [];
    for (let round = 0; round < repeat; round += 1) {
      let started = performance.now();
      const { out_sample: next } = await model.sessions.run('unet', { sample, timestep: hostTensor(new Float32Array([999]), [1]), encoder_hidden_states: embeddings });
      unetTimes.push(performance.now() - started);
      started = performance.now();
      const { sample: decoded } = await model.sessions.run('vae_decoder', { latent_sample: next! }, { read: ['sample'] });
      decoderTimes.push(performance.now() - started);
      await next!.dispose();
      await decoded!.dispose();
    }
    console.log(`warm, median of ${repeat}: unet ${median(unetTimes)} ms (call returns; GPU work may still be queued), unet + decoder + image read ${median(unetTimes.map((time, index) => time + decoderTimes[index]!))} ms`);
  }
  await model.dispose();
} finally {
  await runtime.dispose();
}
