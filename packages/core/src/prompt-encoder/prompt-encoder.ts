import { hostTensor } from '../runtime/host-tensor.js';
import type { RuntimeTensor, SessionSet } from '../runtime/runtime.js';
import type { ClipTokenizer } from '../tokenizer/clip-tokenizer.js';

/** Turns prompts into the text embeddings `[1, 77, D]` the UNet is conditioned on. */
export interface PromptEncoder {
  /** Token ids of a prompt, padded or truncated to 77 (what the text encoder sees). */
  tokenize(prompt: string): Int32Array;
  /**
   * The text encoder's `last_hidden_state` for a prompt. It stays on the device (feed it to the UNet
   * as is); read it with `float32()`; `dispose()` it when done.
   */
  encode(prompt: string): Promise<RuntimeTensor>;
}

/** A prompt encoder over a loaded `text_encoder` session and its CLIP tokenizer. */
export function createPromptEncoder(options: {
  readonly sessions: Pick<SessionSet<'text_encoder'>, 'run'>;
  readonly tokenizer: ClipTokenizer;
}): PromptEncoder {
  const { sessions, tokenizer } = options;
  return {
    tokenize: (prompt) => tokenizer.encode(prompt),
    async encode(prompt) {
      const ids = tokenizer.encode(prompt);
      const outputs = await sessions.run('text_encoder', { input_ids: hostTensor(ids, [1, ids.length]) });
      const { last_hidden_state: hidden, ...others } = outputs;
      // Only the per-token states condition the UNet; the pooled output is not used by SD.
      await Promise.all(Object.values(others).map((tensor) => tensor.dispose()));
      if (hidden === undefined) throw new Error('the text encoder has no "last_hidden_state" output');
      return hidden;
    },
  };
}
