import { describe, expect, it } from 'vitest';
import { errorFromWire, errorToWire } from './error-wire.js';
import {
  DeviceUnavailableError,
  DisposedError,
  InferenceError,
  InvalidArgumentError,
  ModelFolderError,
  TensorInputError,
} from './errors.js';
import { StreamDiffusionError } from './streamdiffusion-error.js';

// Errors thrown in the inference worker reach callers as the same class with the same fields.
describe('errors across the worker boundary', () => {
  const cases = [
    new DeviceUnavailableError({ device: 'webgpu', missing: 'vulkan-loader', message: 'no loader' }),
    new TensorInputError({ model: 'unet', input: 'sample', expected: 'float16 [1, 4, 64, 64]', actual: 'int32 [1]' }),
    new ModelFolderError({ problem: 'corrupt-model', path: '/m/unet/model.onnx', message: 'truncated' }),
    new InferenceError({ model: 'unet', message: 'out of memory' }),
    new DisposedError('a SessionSet'),
    new InvalidArgumentError({ field: 'device', value: 'metal', expected: 'cpu | webgpu' }),
  ];
  for (const original of cases) {
    it(original.name, () => {
      const rebuilt = errorFromWire(structuredClone(errorToWire(original)));
      expect(rebuilt).toBeInstanceOf(original.constructor);
      expect(StreamDiffusionError.isInstance(rebuilt)).toBe(true);
      expect(rebuilt.message).toBe(original.message);
      expect({ ...rebuilt }).toEqual({ ...original });
    });
  }

  it('keeps unknown errors as StreamDiffusionError with their name', () => {
    const rebuilt = errorFromWire(errorToWire(new RangeError('boom')));
    expect(rebuilt.name).toBe('RangeError');
    expect(rebuilt.message).toBe('boom');
  });
});
