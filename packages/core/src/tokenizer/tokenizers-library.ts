/**
 * The parts of `@huggingface/tokenizers` (0.2.0) we use, typed. The package's `.d.ts` files import
 * each other without file extensions, which `moduleResolution: NodeNext` cannot follow, so through
 * its own types everything is `any`. The shapes below are read from its 0.2.0 source; the runtime
 * check in {@link tokenizersLibrary} fails loudly if a future version moves them.
 */
import * as untyped from '@huggingface/tokenizers';

/** A normalizer instance: `normalize` is an own-overridable method. */
export interface LibraryNormalizer {
  normalize(text: string): string;
}

/** A pre-tokenizer instance. */
export type LibraryPreTokenizer = object;

/** `new Tokenizer(tokenizerJson, tokenizerConfig)`. */
export interface LibraryTokenizer {
  readonly normalizer: LibraryNormalizer | null;
  readonly pre_tokenizer: LibraryPreTokenizer | null;
  /** Ids (and token strings) of `text`; `add_special_tokens` (default true) runs the post-processor. */
  encode(text: string, options?: { readonly add_special_tokens?: boolean }): { readonly ids: number[]; readonly tokens: string[] };
}

interface TokenizersLibrary {
  readonly Tokenizer: new (tokenizerJson: object, tokenizerConfig: object) => LibraryTokenizer;
  readonly LowercaseNormalizer: abstract new (...args: never[]) => LibraryNormalizer;
  readonly SequenceNormalizer: abstract new (...args: never[]) => LibraryNormalizer & { readonly normalizers: readonly (LibraryNormalizer | null)[] };
  readonly ByteLevelPreTokenizer: abstract new (...args: never[]) => LibraryPreTokenizer & { pattern: RegExp };
  readonly SequencePreTokenizer: abstract new (...args: never[]) => LibraryPreTokenizer & { readonly tokenizers: readonly (LibraryPreTokenizer | null)[] };
}

const EXPECTED_CLASSES = ['Tokenizer', 'LowercaseNormalizer', 'SequenceNormalizer', 'ByteLevelPreTokenizer', 'SequencePreTokenizer'] as const;

/** The library's classes we use, checked to exist. */
export function tokenizersLibrary(): TokenizersLibrary {
  const library = untyped as unknown as Record<string, unknown>;
  for (const name of EXPECTED_CLASSES) {
    if (typeof library[name] !== 'function') {
      throw new Error(`@huggingface/tokenizers no longer exports ${name}; the CLIP tokenizer was written against 0.2.0`);
    }
  }
  return library as unknown as TokenizersLibrary;
}
