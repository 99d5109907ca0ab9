/**
 * Builds, in memory, the `tokenizer.json` that transformers' tokenizers-backed `CLIPTokenizer`
 * constructs from `vocab.json` + `merges.txt`, so that `@huggingface/tokenizers` can run it. Diffusers
 * tokenizer folders carry no `tokenizer.json`; building this one object is what lets us use the
 * library instead of a BPE of our own.
 */
import type { AddedTokenSpec } from './read-tokenizer-folder.js';

/**
 * CLIP's pre-tokenizer regex as transformers 5 writes it. The converter of transformers 4
 * (`CLIPConverter`) lacks the two leading special-token alternatives; they only change anything
 * when a special token's text reaches the pre-tokenizer (e.g. `<|ENDOFTEXT|>`, lowercased by the
 * normalizer), and transformers 5 is our reference.
 */
export const CLIP_SPLIT_PATTERN = String.raw`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;

/** One entry of `tokenizer.json`'s `added_tokens`, as HF tokenizers serializes it. */
export interface AddedTokenJson {
  readonly id: number;
  readonly content: string;
  readonly single_word: boolean;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  readonly normalized: boolean;
  readonly special: boolean;
}

/** The `tokenizer.json` of a CLIP tokenizer (the subset of the format this builder writes). */
export interface ClipTokenizerJson {
  readonly version: '1.0';
  readonly truncation: null;
  readonly padding: null;
  readonly added_tokens: readonly AddedTokenJson[];
  readonly normalizer: unknown;
  readonly pre_tokenizer: unknown;
  readonly post_processor: unknown;
  readonly decoder: unknown;
  readonly model: {
    readonly type: 'BPE';
    readonly dropout: null;
    readonly unk_token: string | null;
    readonly continuing_subword_prefix: '';
    readonly end_of_word_suffix: '</w>';
    readonly fuse_unk: false;
    readonly byte_fallback: false;
    readonly ignore_merges: false;
    readonly vocab: Readonly<Record<string, number>>;
    readonly merges: readonly (readonly [string, string])[];
  };
}

/**
 * Gives every added token its id the way HF tokenizers does: the vocabulary's id when the content is
 * in it, else the id the config recorded, else the next free id. `existing` (a `tokenizer.json`'s own
 * added tokens) are kept as they are; `specs` fill in the rest, a later spec winning over an earlier
 * one with the same content.
 */
export function resolveAddedTokens(options: {
  readonly existing: readonly AddedTokenJson[];
  readonly specs: readonly AddedTokenSpec[];
  readonly vocab: ReadonlyMap<string, number>;
}): AddedTokenJson[] {
  const byContent = new Map<string, AddedTokenJson>(options.existing.map((token) => [token.content, token]));
  const fixed = new Set(byContent.keys());
  let nextId = options.vocab.size;
  for (const id of [...options.vocab.values(), ...options.existing.map((token) => token.id)]) nextId = Math.max(nextId, id + 1);
  for (const spec of options.specs) {
    if (fixed.has(spec.content)) continue;
    const id = options.vocab.get(spec.content) ?? byContent.get(spec.content)?.id ?? spec.id ?? nextId;
    nextId = Math.max(nextId, id + 1);
    byContent.set(spec.content, {
      id,
      content: spec.content,
      single_word: spec.singleWord,
      lstrip: spec.lstrip,
      rstrip: spec.rstrip,
      normalized: spec.normalized,
      special: spec.special,
    });
  }
  return [...byContent.values()];
}

/**
 * The tokenizer transformers 5's `CLIPTokenizer` builds (and, up to the split regex, what transformers
 * 4's `CLIPConverter` wrote): NFC + whitespace runs to one space + lowercase; CLIP's regex split, then
 * byte-level mapping; BPE with `</w>` ending each word; `bos … eos` around the prompt.
 */
export function buildClipTokenizerJson(options: {
  readonly vocab: ReadonlyMap<string, number>;
  readonly merges: readonly (readonly [string, string])[];
  readonly addedTokens: readonly AddedTokenJson[];
  readonly bos: { readonly content: string; readonly id: number };
  readonly eos: { readonly content: string; readonly id: number };
  readonly unkToken: string | null;
}): ClipTokenizerJson {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: options.addedTokens,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: String.raw`\s+` }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [options.eos.content, options.eos.id],
      cls: [options.bos.content, options.bos.id],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: options.unkToken,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(options.vocab),
      merges: options.merges,
    },
  };
}
