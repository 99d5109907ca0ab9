import { createPromptEncoder, type PromptEncoder } from '../prompt-encoder/prompt-encoder.js';
import type { Runtime, SessionSet } from '../runtime/runtime.js';
import type { ModelSource } from '../runtime/wire.js';
import { createClipTokenizer, type ClipTokenizer } from '../tokenizer/clip-tokenizer.js';
import { detectCapabilities, type ModelCapabilities } from './capabilities.js';
import { readModelFolder, type ModelComponent, type ModelFolder } from './model-folder.js';

/** A Stable Diffusion model folder loaded into a runtime: its sessions, tokenizer and capabilities. */
export interface LoadedModel {
  readonly folder: ModelFolder;
  /** The runtime the sessions live in (wrappers load their own models here). */
  readonly runtime: Runtime;
  readonly capabilities: ModelCapabilities;
  readonly sessions: SessionSet<ModelComponent>;
  readonly tokenizer: ClipTokenizer;
  readonly prompts: PromptEncoder;
  /**
   * Replaces the weights of some of the model's networks (a LoRA merged in, rescaled or taken out):
   * each new network must have the same inputs and outputs; it loads while frames go on and takes
   * over between two runs. Pipelines on this model encode their prompts again before their next
   * frame when the text encoder changed.
   */
  replaceWeights(sources: Readonly<Partial<Record<ModelComponent, ModelSource>>>): Promise<void>;
  /** Counts the replacements of the text encoder's weights (pipelines re-encode their prompts when it moves). */
  readonly textEncoderRevision: number;
  /** Releases every session of the model (the runtime stays). */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Reads, checks and loads a model folder into a runtime: each model once, all or nothing.
 * A bad folder raises `ModelFolderError` saying what and where (missing file, corrupt `.onnx`,
 * wrong input names or ranks, unknown beta schedule, missing tokenizer file).
 */
export async function loadModel(options: {
  readonly runtime: Runtime;
  readonly folder: string;
  /**
   * Weights to load instead of the folder's files for some components, e.g. with LoRAs merged in
   * before loading (one load, not a load and a reload); external data is still read beside `path`.
   */
  readonly sources?: Readonly<Partial<Record<ModelComponent, ModelSource>>>;
}): Promise<LoadedModel> {
  const folder = await readModelFolder(options.folder);
  const tokenizer = await createClipTokenizer(folder.tokenizerFolder);
  const sessions = await options.runtime.loadSessions({ ...(folder.models as Record<ModelComponent, string>), ...options.sources });
  let capabilities: ModelCapabilities;
  try {
    capabilities = detectCapabilities(sessions.signatures, folder.models, folder.vae);
  } catch (error) {
    await sessions.dispose();
    throw error;
  }
  const dispose = (): Promise<void> => sessions.dispose();
  let textEncoderRevision = 0;
  return {
    folder,
    runtime: options.runtime,
    capabilities,
    sessions,
    tokenizer,
    prompts: createPromptEncoder({ sessions, tokenizer }),
    async replaceWeights(sources) {
      for (const [component, source] of Object.entries(sources) as [ModelComponent, ModelSource][]) {
        await sessions.replace(component, source);
        if (component === 'text_encoder') textEncoderRevision += 1;
      }
    },
    get textEncoderRevision() {
      return textEncoderRevision;
    },
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}
