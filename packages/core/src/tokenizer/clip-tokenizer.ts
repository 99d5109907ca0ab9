import { InvalidArgumentError, ModelFolderError } from '../errors/errors.js';
import { buildClipTokenizerJson, resolveAddedTokens } from './build-clip-tokenizer-json.js';
import { matchRustTokenizers } from './match-rust-tokenizers.js';
import { readTokenizerFolder, type TokenizerFolderContents } from './read-tokenizer-folder.js';
import { tokenizersLibrary, type LibraryTokenizer } from './tokenizers-library.js';

/**
 * The CLIP tokenizer of a Stable Diffusion model: prompt text → the token ids its text encoder takes.
 * Gives the ids transformers' `CLIPTokenizer` gives with
 * `padding="max_length", truncation=True, max_length=77`.
 */
export interface ClipTokenizer {
  /** Ids per prompt: `model_max_length` from `tokenizer_config.json`, capped at (and defaulting to) 77. */
  readonly maxLength: number;
  /** Id of the token put before every prompt (`<|startoftext|>`). */
  readonly bosTokenId: number;
  /** Id of the token put after every prompt (`<|endoftext|>`). */
  readonly eosTokenId: number;
  /** Id that fills a prompt up to {@link ClipTokenizer.maxLength}: `<|endoftext|>` for SD1.x, `!` (0) for SD2.x. */
  readonly padTokenId: number;
  /** Size of the base vocabulary (`vocab.json`, without added tokens), as transformers' `vocab_size`. */
  readonly vocabSize: number;
  /**
   * Exactly {@link ClipTokenizer.maxLength} ids: bos, the prompt's tokens, eos, then padding. A prompt
   * too long to fit loses its last tokens; bos and eos always stay.
   */
  encode(prompt: string): Int32Array;
  /** The prompt's ids with bos and eos, neither truncated nor padded (for tests and debugging). */
  tokenize(prompt: string): number[];
}

/**
 * Loads the CLIP tokenizer saved in `folder` (a diffusers `tokenizer/` folder). A `tokenizer.json`
 * is used when present; otherwise the one transformers would build from `vocab.json` and
 * `merges.txt` is built in memory. `tokenizer_config.json` and `special_tokens_map.json` are read
 * when present (CLIP's defaults otherwise).
 *
 * @throws {ModelFolderError} `missing-tokenizer-file` naming the absent file, or `bad-config` naming
 * the file that cannot be parsed or used.
 */
export async function createClipTokenizer(folder: string): Promise<ClipTokenizer> {
  const contents = await readTokenizerFolder(folder);
  const { settings } = contents;
  const { json, path, vocabSize, ids } = tokenizerJsonOf(contents);
  const { bos: bosTokenId, eos: eosTokenId, pad: padTokenId } = ids;

  const { Tokenizer } = tokenizersLibrary();
  let library: LibraryTokenizer;
  try {
    // The library reads only a few generic keys from the config (remove_space,
    // do_lowercase_and_remove_accent…) that transformers' CLIPTokenizer ignores: pass none.
    library = new Tokenizer(json, {});
  } catch (error) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: `the tokenizer cannot be built: ${(error as Error).message}`, cause: error });
  }
  matchRustTokenizers(library);

  // `encode` frames and truncates by position, so check once that the post-processor wraps prompts
  // as bos … eos (a hand-written tokenizer.json might not).
  const empty = library.encode('').ids;
  if (empty.length !== 2 || empty[0] !== bosTokenId || empty[1] !== eosTokenId) {
    throw new ModelFolderError({
      problem: 'bad-config',
      path,
      message: `an empty prompt gives ids [${empty.join(', ')}]; expected [${bosTokenId}, ${eosTokenId}] (bos, eos)`,
    });
  }

  const { maxLength } = settings;
  const tokenize = (prompt: string): number[] => {
    if (typeof prompt !== 'string') throw new InvalidArgumentError({ field: 'prompt', value: prompt, expected: 'a string' });
    return library.encode(prompt).ids;
  };
  return Object.freeze({
    maxLength,
    bosTokenId,
    eosTokenId,
    padTokenId,
    vocabSize,
    tokenize,
    encode(prompt: string): Int32Array {
      const tokens = tokenize(prompt);
      const encoded = new Int32Array(maxLength).fill(padTokenId);
      if (tokens.length <= maxLength) {
        encoded.set(tokens);
      } else {
        // transformers truncates the prompt's tokens to maxLength - 2, then adds bos and eos.
        encoded.set(tokens.slice(0, maxLength - 1));
        encoded[maxLength - 1] = eosTokenId;
      }
      return encoded;
    },
  });
}

function tokenizerJsonOf(contents: TokenizerFolderContents): {
  json: object;
  path: string;
  vocabSize: number;
  ids: { bos: number; eos: number; pad: number };
} {
  const { settings, vocab } = contents;
  // A tokenizer.json's own added tokens are kept as written; transformers still registers the
  // config's named special tokens on top (SD2.x's pad "!" among them), so those are added.
  const existing = contents.kind === 'tokenizer-json' ? contents.addedTokens : [];
  const addedTokens = resolveAddedTokens({ existing, specs: settings.addedTokens, vocab });
  const path = contents.kind === 'tokenizer-json' ? contents.path : contents.vocabPath;
  const idOf = (content: string): number => {
    const id = addedTokens.find((token) => token.content === content)?.id;
    // Every named special token is registered as an added token, so this is a safety net.
    if (id === undefined) throw new ModelFolderError({ problem: 'bad-config', path, message: `token ${JSON.stringify(content)} has no id` });
    return id;
  };
  const ids = { bos: idOf(settings.bosToken), eos: idOf(settings.eosToken), pad: idOf(settings.padToken) };

  if (contents.kind === 'tokenizer-json') {
    return { json: { ...contents.json, added_tokens: addedTokens }, path, vocabSize: vocab.size, ids };
  }
  const json = buildClipTokenizerJson({
    vocab,
    merges: contents.merges,
    addedTokens,
    bos: { content: settings.bosToken, id: ids.bos },
    eos: { content: settings.eosToken, id: ids.eos },
    unkToken: settings.unkToken,
  });
  return { json, path, vocabSize: vocab.size, ids };
}
