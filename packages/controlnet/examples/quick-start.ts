import { createRuntime, loadModel, createStreamDiffusion, readImage, writeImage } from '@streamdiffusion/core';
import { createControlNet } from '@streamdiffusion/controlnet';

// Paths from the repository root: the micro fixtures (random weights) stand in for real models.
const runtime = await createRuntime({ device: 'auto' });
// A model folder whose UNet has the 13 ControlNet residual inputs
// (python -m streamdiffusion_export convert … --controlnet-inputs).
const model = await loadModel({ runtime, folder: 'fixtures/models/micro-sd-turbo-controlnet' });
const controlnet = createControlNet({
  controlnets: [
    { model_id: 'fixtures/controlnets/micro-canny', conditioning_scale: 0.8, preprocessor: 'canny', preprocessor_params: { low_threshold: 100, high_threshold: 200 } },
  ],
});
const stream = await createStreamDiffusion({ model, prompt: 'a lighthouse at dusk', tIndexList: [32], width: 64, height: 64, wrappers: [controlnet] });

const { images } = await stream.img2img(await readImage('fixtures/images/example.png'));
await writeImage('controlnet-out.png', images[0]!);

// Live: every key is hot. A new model_id loads beside the running stream; a missing one is removed.
await stream.update({ controlnets: [{ model_id: 'fixtures/controlnets/micro-canny', conditioning_scale: 0.3, preprocessor: 'canny' }] });
await stream.img2img(await readImage('fixtures/images/example.png'));

await stream.dispose();
await model.dispose();
await runtime.dispose();
