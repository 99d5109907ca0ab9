import { ModelFolderError } from '../errors/errors.js';
import type { Dtype } from '../runtime/dtypes.js';
import { describeSignature, type ModelSignature, type ValueSignature } from '../runtime/model-signature.js';
import type { ModelComponent, VaeDescription } from './model-folder.js';
import { TEXT_TOKENS, UNET_INPUTS } from './unet-inputs.js';

/** What a loaded model can do, read from its ONNX inputs and outputs rather than from flags. */
export interface ModelCapabilities {
  /** Precision of the UNet's float inputs. */
  readonly dtype: Dtype;
  readonly latentChannels: number;
  /** Latent height and width when the export fixed them; null when any size is accepted. */
  readonly latentHeight: number | null;
  readonly latentWidth: number | null;
  /** The UNet's batch when the export fixed it; null when dynamic. */
  readonly batch: number | null;
  /** Width D of the text embeddings `[1, 77, D]` (768 for SD1.5, 1024 for SD2.1/SD-Turbo). */
  readonly textEmbeddingWidth: number;
  /** True when a VAE encoder is present (img2img); txt2img needs only the decoder. */
  readonly imageToImage: boolean;
  /** ControlNet residual inputs of the UNet, or null when it has none. */
  readonly controlNet: { readonly downBlockResiduals: readonly string[]; readonly midBlockResidual: string } | null;
  /**
   * IP-Adapter inputs of the UNet, or null: the scale input (`[batch, layers]`, one scale per batch
   * entry and cross-attention layer). `imageTokens` is null when the token count is dynamic.
   */
  readonly ipAdapter: { readonly scaleInput: string; readonly layers: number | null; readonly imageTokens: number | null } | null;
  readonly vae: VaeDescription;
}

type Signatures = Readonly<Partial<Record<ModelComponent, ModelSignature>>> & {
  readonly unet: ModelSignature;
  readonly vae_decoder: ModelSignature;
  readonly text_encoder: ModelSignature;
};

function requireInput(
  component: ModelComponent,
  path: string,
  signature: ModelSignature,
  name: string,
  ranks: readonly number[],
): ValueSignature {
  const value = signature.inputs.find((input) => input.name === name);
  const found = signature.inputs.map((input) => `${input.name}: ${describeSignature(input)}`).join('; ');
  if (value === undefined) {
    throw new ModelFolderError({
      problem: 'bad-signature',
      path,
      message: `the ${component} model has no input "${name}" (its inputs: ${found})`,
    });
  }
  if (!ranks.includes(value.shape.length)) {
    throw new ModelFolderError({
      problem: 'bad-signature',
      path,
      message: `the ${component} input "${name}" has rank ${value.shape.length} (${describeSignature(value)}); expected rank ${ranks.join(' or ')}`,
    });
  }
  return value;
}

function fixed(dim: number | string | undefined): number | null {
  return typeof dim === 'number' && dim >= 0 ? dim : null;
}

/**
 * Checks the models' inputs (names and ranks) and derives what the model can do. A wrong
 * signature raises {@link ModelFolderError} (`bad-signature`) naming the file and the input.
 */
export function detectCapabilities(
  signatures: Signatures,
  paths: Readonly<Partial<Record<ModelComponent, string>>>,
  vae: VaeDescription,
): ModelCapabilities {
  const unetPath = paths.unet ?? 'unet/model.onnx';
  const sample = requireInput('unet', unetPath, signatures.unet, UNET_INPUTS.sample, [4]);
  requireInput('unet', unetPath, signatures.unet, UNET_INPUTS.timestep, [0, 1]);
  const hidden = requireInput('unet', unetPath, signatures.unet, UNET_INPUTS.encoderHiddenStates, [3]);
  requireInput('vae_decoder', paths.vae_decoder ?? 'vae_decoder/model.onnx', signatures.vae_decoder, 'latent_sample', [4]);
  const ids = requireInput('text_encoder', paths.text_encoder ?? 'text_encoder/model.onnx', signatures.text_encoder, 'input_ids', [2]);
  if (signatures.vae_encoder !== undefined) {
    requireInput('vae_encoder', paths.vae_encoder ?? 'vae_encoder/model.onnx', signatures.vae_encoder, 'sample', [4]);
  }
  if (sample.type !== 'float32' && sample.type !== 'float16') {
    throw new ModelFolderError({ problem: 'bad-signature', path: unetPath, message: `the unet input "sample" is ${sample.type}; expected float32 or float16` });
  }
  const textWidth = fixed(hidden.shape[2]) ?? fixed(signatures.text_encoder.outputs[0]?.shape[2]);
  if (textWidth === null) {
    throw new ModelFolderError({ problem: 'bad-signature', path: unetPath, message: 'the text-embedding width (last dim of encoder_hidden_states) is not fixed' });
  }
  const textTokens = fixed(ids.shape[1]);
  if (textTokens !== null && textTokens !== TEXT_TOKENS) {
    throw new ModelFolderError({
      problem: 'bad-signature',
      path: paths.text_encoder ?? 'text_encoder/model.onnx',
      message: `the text encoder takes ${textTokens} tokens; CLIP prompts are ${TEXT_TOKENS}`,
    });
  }
  const names = new Set(signatures.unet.inputs.map((input) => input.name));
  const downBlockResiduals = signatures.unet.inputs
    .map((input) => input.name)
    .filter((name) => name.startsWith(UNET_INPUTS.downBlockResidualPrefix))
    .sort((a, b) => residualIndex(a) - residualIndex(b));
  const scale = signatures.unet.inputs.find((input) => input.name === UNET_INPUTS.ipAdapterScale);
  const tokens = fixed(hidden.shape[1]);
  return {
    dtype: sample.type === 'float16' ? 'fp16' : 'fp32',
    latentChannels: fixed(sample.shape[1]) ?? 4,
    latentHeight: fixed(sample.shape[2]),
    latentWidth: fixed(sample.shape[3]),
    batch: fixed(sample.shape[0]),
    textEmbeddingWidth: textWidth,
    imageToImage: signatures.vae_encoder !== undefined,
    controlNet:
      downBlockResiduals.length > 0 && names.has(UNET_INPUTS.midBlockResidual)
        ? { downBlockResiduals, midBlockResidual: UNET_INPUTS.midBlockResidual }
        : null,
    ipAdapter:
      scale === undefined
        ? null
        : {
            scaleInput: scale.name,
            // [batch, layers]: one row of per-layer scales per batch entry.
            layers: fixed(scale.shape[scale.shape.length - 1]),
            imageTokens: tokens === null ? null : tokens - TEXT_TOKENS,
          },
    vae,
  };
}

function residualIndex(name: string): number {
  return Number(name.slice(UNET_INPUTS.downBlockResidualPrefix.length));
}
