/**
 * Two places where `@huggingface/tokenizers` 0.2.0 (JavaScript) and HF tokenizers (Rust, what
 * transformers runs) give different tokens for the same `tokenizer.json`, and the fix for each. Both
 * touch only public fields of the library's own instances, so nothing global changes.
 */
import { tokenizersLibrary, type LibraryNormalizer, type LibraryPreTokenizer, type LibraryTokenizer } from './tokenizers-library.js';

/**
 * GPT-2's byte-level split with `\s` spelled as Unicode White_Space. The library writes it with
 * JavaScript's `\s`, which also matches U+FEFF (zero-width no-break space); Rust's Oniguruma `\s`
 * does not, so `"!\uFEFF!"` was one pre-token in Python and three here.
 */
const BYTE_LEVEL_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/**
 * Rust lowercases one character at a time; JavaScript's `toLowerCase` applies the Final_Sigma rule
 * (a capital sigma ending a word becomes `ς`, not `σ`), so Greek prompts got different bytes.
 * Lowercasing each code point alone is exactly Rust's `char::to_lowercase`.
 */
function lowercaseEachCharacter(text: string): string {
  let lowered = '';
  for (const character of text) lowered += character.toLowerCase();
  return lowered;
}

/** Makes a library tokenizer produce the ids HF tokenizers (Rust) gives; see the file comment. */
export function matchRustTokenizers(tokenizer: LibraryTokenizer): void {
  const library = tokenizersLibrary();

  const fixNormalizer = (normalizer: LibraryNormalizer): void => {
    if (normalizer instanceof library.SequenceNormalizer) {
      for (const inner of normalizer.normalizers) if (inner !== null) fixNormalizer(inner);
    } else if (normalizer instanceof library.LowercaseNormalizer) {
      normalizer.normalize = lowercaseEachCharacter;
    }
  };
  const fixPreTokenizer = (preTokenizer: LibraryPreTokenizer): void => {
    if (preTokenizer instanceof library.SequencePreTokenizer) {
      for (const inner of preTokenizer.tokenizers) if (inner !== null) fixPreTokenizer(inner);
    } else if (preTokenizer instanceof library.ByteLevelPreTokenizer) {
      // A fresh RegExp per instance: the pattern is global (`g`), so it carries `lastIndex` state.
      preTokenizer.pattern = new RegExp(BYTE_LEVEL_PATTERN.source, BYTE_LEVEL_PATTERN.flags);
    }
  };

  if (tokenizer.normalizer !== null) fixNormalizer(tokenizer.normalizer);
  if (tokenizer.pre_tokenizer !== null) fixPreTokenizer(tokenizer.pre_tokenizer);
}
