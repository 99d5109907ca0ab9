import { createRuntime, loadModel, createStreamDiffusion, readImage, writeImage } from '@streamdiffusion/core';
import { createIpAdapter } from '@streamdiffusion/ip-adapter';

// Paths from the repository root: the micro fixtures (random weights) stand in for real models.
const runtime = await createRuntime({ device: 'auto' });
// A model folder exported with an IP-Adapter (python -m streamdiffusion_export convert … --ip-adapter
// ip-adapter_sd15.safetensors --image-encoder <CLIP vision folder>): its UNet carries the adapter's
// attention, and image_encoder/ and image_projection/ sit beside it.
const folder = 'fixtures/models/micro-sd-turbo-ipadapter';
const model = await loadModel({ runtime, folder });
const ipAdapter = await createIpAdapter({
  ipadapters: [{ ipadapter_model_path: folder, style_image: 'fixtures/images/style.png', scale: 0.8, weight_type: 'style transfer' }],
});
const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse at dusk', tIndexList: [32], width: 64, height: 64, wrappers: [ipAdapter] });

const { images } = await stream.img2img(await readImage('fixtures/images/example.png'));
await writeImage('ip-adapter-out.png', images[0]!);

// Live: the style image, scale, weight type and schedule are hot. A new style image is embedded
// beside the running stream (once; switching back is free) and lands between two frames.
await stream.update({
  ipadapters: [{ ipadapter_model_path: folder, style_images: [{ image: 'fixtures/images/style.png', weight: 0.7 }, { image: 'fixtures/images/example.png', weight: 0.3 }], scale: 1 }],
});
await stream.img2img(await readImage('fixtures/images/example.png'));

await stream.dispose();
await model.dispose();
await runtime.dispose();
