import { describe, expect, it } from 'vitest';
import type { ModelSignature, ValueSignature } from '../runtime/model-signature.js';
import { detectCapabilities } from './capabilities.js';
import type { VaeDescription } from './model-folder.js';

const vae: VaeDescription = { kind: 'taesd', scalingFactor: 1, spatialFactor: 8 };
const f32 = (name: string, shape: (number | string)[]): ValueSignature => ({ name, type: 'float32', shape });
const signature = (inputs: ValueSignature[]): ModelSignature => ({ inputs, outputs: [f32('out', [])] });

const baseUnet = [f32('sample', ['batch', 4, 'height', 'width']), f32('timestep', ['batch']), f32('encoder_hidden_states', ['batch', 77, 1024])];
const others = {
  vae_decoder: signature([f32('latent_sample', ['batch', 4, 'h', 'w'])]),
  vae_encoder: signature([f32('sample', ['batch', 3, 'H', 'W'])]),
  text_encoder: { inputs: [{ name: 'input_ids', type: 'int32' as const, shape: ['batch', 77] }], outputs: [f32('last_hidden_state', ['batch', 77, 1024])] },
};

describe('capability detection from ONNX names', () => {
  it('finds ControlNet residual inputs in numeric order (12 down + mid)', () => {
    const residuals = Array.from({ length: 12 }, (_, index) => f32(`down_block_residual_${11 - index}`, ['batch', 320, 'h', 'w']));
    const capabilities = detectCapabilities(
      { ...others, unet: signature([...baseUnet, ...residuals, f32('mid_block_residual', ['batch', 1280, 'h', 'w'])]) },
      {},
      vae,
    );
    expect(capabilities.controlNet?.downBlockResiduals).toEqual(Array.from({ length: 12 }, (_, index) => `down_block_residual_${index}`));
    expect(capabilities.controlNet?.midBlockResidual).toBe('mid_block_residual');
    expect(capabilities.ipAdapter).toBeNull();
    expect(capabilities.textEmbeddingWidth).toBe(1024);
  });

  it('finds IP-Adapter inputs and counts image tokens after the 77 text tokens', () => {
    const unet = signature([
      baseUnet[0]!,
      baseUnet[1]!,
      f32('encoder_hidden_states', ['batch', 81, 768]),
      f32('ip_adapter_scale', ['batch', 16]),
    ]);
    const capabilities = detectCapabilities({ ...others, unet }, {}, vae);
    expect(capabilities.ipAdapter).toEqual({ scaleInput: 'ip_adapter_scale', layers: 16, imageTokens: 4 });
    expect(capabilities.controlNet).toBeNull();
  });

  it('reads static latent size and batch, and fp16, from a static export', () => {
    const unet = signature([
      { name: 'sample', type: 'float16', shape: [2, 4, 64, 80] },
      { name: 'timestep', type: 'float16', shape: [2] },
      { name: 'encoder_hidden_states', type: 'float16', shape: [2, 77, 768] },
    ]);
    const capabilities = detectCapabilities({ vae_decoder: others.vae_decoder, text_encoder: others.text_encoder, unet }, {}, vae);
    expect(capabilities).toMatchObject({ dtype: 'fp16', batch: 2, latentHeight: 64, latentWidth: 80, imageToImage: false });
  });

  it('rejects a text encoder that does not take 77 tokens', () => {
    const text_encoder = { ...others.text_encoder, inputs: [{ name: 'input_ids', type: 'int32' as const, shape: [1, 64] }] };
    expect(() => detectCapabilities({ ...others, text_encoder, unet: signature(baseUnet) }, { text_encoder: '/m/text_encoder/model.onnx' }, vae)).toThrow(
      /takes 64 tokens; CLIP prompts are 77 \(\/m\/text_encoder\/model\.onnx\)/,
    );
  });
});
