import { createRuntime, createStreamDiffusion, loadModel } from '@streamdiffusion/core';
import { createHotLora } from '@streamdiffusion/tensorrt';

const runtime = await createRuntime({ device: 'cpu' });
const model = await loadModel({ runtime, folder: 'fixtures/models/tiny-sd-turbo' });
const stream = await createStreamDiffusion({ model, width: 64, height: 64, tIndexList: [20], prompt: 'a lighthouse' });
const lora = await createHotLora(model);
await lora.apply([{ path: 'fixtures/loras/kohya.safetensors', scale: 0.8 }]);   // merge
await lora.apply([{ path: 'fixtures/loras/kohya.safetensors', scale: 0.3 }]);   // rescale
const report = await lora.apply([]);                                             // back to the original weights
console.log(`removed: reloaded ${report.reloaded.join(', ')} in ${Math.round(report.timings.total)} ms`);
await stream.img2img('fixtures/images/example.png');
await stream.dispose();
await model.dispose();
await runtime.dispose();
