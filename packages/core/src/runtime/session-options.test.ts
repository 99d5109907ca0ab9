import { describe, expect, it } from 'vitest';
import { sessionOptions } from './session-options.js';

// The options are plain data, so what the GPU path relies on is checked on a machine without a GPU.
describe('sessionOptions', () => {
  it('keeps WebGPU outputs in GPU memory, so one model feeds the next without a round trip', () => {
    expect(sessionOptions('webgpu', {})).toMatchObject({
      executionProviders: [{ name: 'webgpu', preferredLayout: 'NHWC' }],
      preferredOutputLocation: 'gpu-buffer',
    });
    // Whatever the WebGPU settings say.
    const tuned = sessionOptions('webgpu', { intraOpThreads: 2, webgpu: { preferredLayout: 'NCHW', validationMode: 'disabled' } });
    expect(tuned).toMatchObject({
      executionProviders: [{ name: 'webgpu', preferredLayout: 'NCHW', validationMode: 'disabled' }],
      intraOpNumThreads: 2,
      preferredOutputLocation: 'gpu-buffer',
    });
  });

  it('leaves CPU outputs on the host, where onnxruntime makes them', () => {
    const options = sessionOptions('cpu', { intraOpThreads: 1 });
    expect(options).toMatchObject({ executionProviders: ['cpu'], intraOpNumThreads: 1 });
    expect(options.preferredOutputLocation).toBeUndefined();
    expect(sessionOptions('cpu', {})).not.toHaveProperty('intraOpNumThreads');
  });
});
