import type { InferenceSession } from 'onnxruntime-node';
import type { Device } from './devices.js';
import type { SessionSettings } from './wire.js';

/**
 * onnxruntime session options for a device. On WebGPU, outputs stay in GPU memory
 * (`gpu-buffer`): a UNet's output feeds the scheduler and the VAE without a round trip through
 * the host, and only what the caller reads is copied back (by sessions that override this with `cpu`).
 */
export function sessionOptions(target: Device, settings: SessionSettings): InferenceSession.SessionOptions {
  const providers: InferenceSession.ExecutionProviderConfig[] =
    target === 'webgpu'
      ? [{ name: 'webgpu', preferredLayout: 'NHWC', ...settings.webgpu }]
      : target === 'cpu'
        ? ['cpu']
        : [{ name: target, deviceId: 0 }];
  return {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
    ...(settings.intraOpThreads === undefined ? {} : { intraOpNumThreads: settings.intraOpThreads }),
    ...(target === 'webgpu' ? { preferredOutputLocation: 'gpu-buffer' as const } : {}),
  };
}
