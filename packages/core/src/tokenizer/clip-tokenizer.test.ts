import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, readGoldenJson } from '../../test-support/goldens.js';
import { InvalidArgumentError, ModelFolderError } from '../errors/errors.js';
import { createClipTokenizer, type ClipTokenizer } from './clip-tokenizer.js';

// ---------------------------------------------------------------------------------------------
// A small CLIP-format tokenizer written by the tests. Its layout is CLIP's: ids 0-255 are the 256
// byte symbols, 256-511 the same symbols + "</w>", then one id per merge, then the two specials.
// ---------------------------------------------------------------------------------------------

/** CLIP's byte → symbol table, in vocabulary order: printable Latin-1 bytes as themselves, the rest moved to U+0100 on. */
function byteSymbolsInVocabOrder(): string[] {
  const printable: number[] = [];
  for (let byte = 0x21; byte <= 0x7e; byte++) printable.push(byte);
  for (let byte = 0xa1; byte <= 0xac; byte++) printable.push(byte);
  for (let byte = 0xae; byte <= 0xff; byte++) printable.push(byte);
  const symbols = printable.map((byte) => String.fromCharCode(byte));
  let moved = 0;
  for (let byte = 0; byte < 256; byte++) if (!printable.includes(byte)) symbols.push(String.fromCharCode(0x100 + moved++));
  return symbols;
}

// Merges in rank order; merge k creates vocabulary id 512 + k.
const MERGES: readonly (readonly [string, string])[] = [
  ['h', 'e'], // 512 he
  ['l', 'l'], // 513 ll
  ['l', 'o</w>'], // 514 lo</w>
  ['he', 'll'], // 515 hell
  ['hell', 'o</w>'], // 516 hello</w>
  ['c', 'a'], // 517 ca
  ['ca', 't</w>'], // 518 cat</w>
  ["'", 's</w>'], // 519 's</w>
  ["'", 't</w>'], // 520 't</w>
  ['a', 'a'], // 521 aa
];
const HE = 512;
const HELLO = 516;
const CAT = 518;
const APOSTROPHE_S = 519;
const APOSTROPHE_T = 520;
const AA = 521;
const BOS = 522;
const EOS = 523;

/**
 * The id the test vocabulary gives a byte, worked out from CLIP's table rather than read from it:
 * printable ASCII `!`..`~` are 0-93, 0xA1-0xAC are 94-105, 0xAE-0xFF are 106-187, then the
 * non-printable bytes in order: 0x00-0x20 → 188-220, 0x7F-0xA0 → 221-254, 0xAD → 255.
 */
function byteId(byte: number): number {
  if (byte >= 0x21 && byte <= 0x7e) return byte - 0x21;
  if (byte >= 0xa1 && byte <= 0xac) return 94 + byte - 0xa1;
  if (byte >= 0xae) return 106 + byte - 0xae;
  if (byte <= 0x20) return 188 + byte;
  if (byte <= 0xa0) return 221 + byte - 0x7f;
  return 255;
}
/** An ASCII character as a word-inner symbol. */
const inner = (character: string): number => byteId(character.charCodeAt(0));
/** An ASCII character ending a word (its symbol + "</w>", 256 ids further). */
const last = (character: string): number => inner(character) + 256;

function testVocab(): Record<string, number> {
  const symbols = byteSymbolsInVocabOrder();
  const tokens = [...symbols, ...symbols.map((symbol) => `${symbol}</w>`), ...MERGES.map(([left, right]) => left + right), '<|startoftext|>', '<|endoftext|>'];
  return Object.fromEntries(tokens.map((token, id) => [token, id]));
}

const addedToken = (content: string, normalized: boolean) => ({ content, lstrip: false, normalized, rstrip: false, single_word: false });

/** SD 1.x as transformers 4 saved it: AddedToken dicts, pad "<|endoftext|>", no added_tokens_decoder. */
const SD15_STYLE = {
  config: {
    bos_token: { __type: 'AddedToken', ...addedToken('<|startoftext|>', true) },
    eos_token: { __type: 'AddedToken', ...addedToken('<|endoftext|>', true) },
    unk_token: { __type: 'AddedToken', ...addedToken('<|endoftext|>', true) },
    pad_token: '<|endoftext|>',
    model_max_length: 77,
    do_lower_case: true,
    tokenizer_class: 'CLIPTokenizer',
  },
  map: {
    bos_token: addedToken('<|startoftext|>', true),
    eos_token: addedToken('<|endoftext|>', true),
    unk_token: addedToken('<|endoftext|>', true),
    pad_token: '<|endoftext|>',
  },
};

/** SD 2.x as transformers >= 4.34 saves it: pad "!" and an added_tokens_decoder. */
const SD21_STYLE = {
  config: {
    added_tokens_decoder: {
      '0': { ...addedToken('!', false), special: true },
      [String(BOS)]: { ...addedToken('<|startoftext|>', true), special: true },
      [String(EOS)]: { ...addedToken('<|endoftext|>', true), special: true },
    },
    bos_token: '<|startoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    pad_token: '!',
    model_max_length: 77,
    tokenizer_class: 'CLIPTokenizer',
  },
  map: { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '!' },
};

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'clip-tokenizer-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let folderCount = 0;
/** Writes a tokenizer folder: the test vocab.json and merges.txt, plus `files` (undefined leaves a file out). */
async function writeTokenizerFolder(files: Record<string, string | object | undefined>): Promise<string> {
  const folder = join(scratch, `tokenizer-${folderCount++}`);
  const all: Record<string, string | object | undefined> = {
    'vocab.json': testVocab(),
    'merges.txt': `#version: 0.2\n${MERGES.map((pair) => pair.join(' ')).join('\n')}\n`,
    ...files,
  };
  await mkdir(folder, { recursive: true });
  for (const [name, content] of Object.entries(all)) {
    if (content === undefined) continue;
    await writeFile(join(folder, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
  return folder;
}

async function tokenizerOfStyle(style: { config: object; map: object }, extra: Record<string, string | object | undefined> = {}): Promise<ClipTokenizer> {
  return createClipTokenizer(await writeTokenizerFolder({ 'tokenizer_config.json': style.config, 'special_tokens_map.json': style.map, ...extra }));
}

describe('CLIP tokenizer (hand-made CLIP-format vocabulary)', () => {
  let sd15: ClipTokenizer;
  let sd21: ClipTokenizer;
  beforeAll(async () => {
    [sd15, sd21] = await Promise.all([tokenizerOfStyle(SD15_STYLE), tokenizerOfStyle(SD21_STYLE)]);
  });

  it('reads the special token ids, the length and the vocabulary size', () => {
    expect(sd15).toMatchObject({ bosTokenId: BOS, eosTokenId: EOS, padTokenId: EOS, maxLength: 77, vocabSize: 524 });
    // SD 2.x pads with "!", the first symbol of CLIP's byte table.
    expect(sd21).toMatchObject({ bosTokenId: BOS, eosTokenId: EOS, padTokenId: 0, maxLength: 77, vocabSize: 524 });
  });

  it('lowercases and collapses whitespace before splitting into words', () => {
    // "  HELLO \n\t Cat  " normalizes to " hello cat "; the split drops the spaces: words "hello", "cat".
    expect(sd15.tokenize('  HELLO \n\t Cat  ')).toEqual([BOS, HELLO, CAT, EOS]);
  });

  it('applies merges by rank, leftmost first, with "</w>" marking the end of a word', () => {
    // h e l l o</w>: "h e" (rank 0) → he; then "l l" (rank 1) beats "l o</w>" (rank 2) → he ll o</w>;
    // "he ll" (3) → hell; "hell o</w>" (4) → hello</w>.
    expect(sd15.tokenize('hello')).toEqual([BOS, HELLO, EOS]);
    // h e l l</w>: "he", but "l l</w>" is not the merge "l l" (the last symbol carries </w>).
    expect(sd15.tokenize('hell')).toEqual([BOS, HE, inner('l'), last('l'), EOS]);
    // a a a</w>: "a a" applies at the leftmost position; "aa a</w>" is no merge.
    expect(sd15.tokenize('aaa')).toEqual([BOS, AA, last('a'), EOS]);
    // l o</w> is itself a merge.
    expect(sd15.tokenize('lo')).toEqual([BOS, 514, EOS]);
  });

  it('pads to 77 with the configured pad token (SD 1.x: <|endoftext|>, SD 2.x: "!")', () => {
    const sd15Ids = sd15.encode('cat');
    expect(sd15Ids).toBeInstanceOf(Int32Array);
    expect(Array.from(sd15Ids)).toEqual([BOS, CAT, EOS, ...Array<number>(74).fill(EOS)]);
    expect(Array.from(sd21.encode('cat'))).toEqual([BOS, CAT, EOS, ...Array<number>(74).fill(0)]);
  });

  it('gives an empty prompt bos, eos and padding', () => {
    expect(Array.from(sd21.encode(''))).toEqual([BOS, EOS, ...Array<number>(75).fill(0)]);
    expect(sd15.tokenize('   ')).toEqual([BOS, EOS]);
  });

  it('truncates an over-long prompt to 75 tokens between bos and eos', () => {
    const words = (count: number) => Array<string>(count).fill('cat').join(' ');
    // Each "cat" is one token: 75 fit exactly, with no truncation.
    expect(Array.from(sd15.encode(words(75)))).toEqual([BOS, ...Array<number>(75).fill(CAT), EOS]);
    // 100 words: transformers keeps the first 75 and still ends with eos.
    expect(sd15.tokenize(words(100))).toHaveLength(102);
    const truncated = sd21.encode(words(100));
    expect(truncated).toHaveLength(77);
    expect(Array.from(truncated)).toEqual([BOS, ...Array<number>(75).fill(CAT), EOS]);
  });

  it('splits punctuation and the contractions \'s and \'t off words', () => {
    // "cat's, don't!" → cat | 's | , | don | 't | ! ; "don" has no merge: d o n</w>.
    expect(sd15.tokenize("Cat's, DON'T!")).toEqual([BOS, CAT, APOSTROPHE_S, last(','), inner('d'), inner('o'), last('n'), APOSTROPHE_T, last('!'), EOS]);
    // A run of punctuation is one word: "!!" → ! !</w>.
    expect(sd15.tokenize('cat!!')).toEqual([BOS, CAT, inner('!'), last('!'), EOS]);
  });

  it('matches SD 2.x\'s pad token "!" whole, as transformers does (diffusers issue #4153)', () => {
    // "!" is registered as a special added token, so each "!" is cut out before BPE and is id 0.
    expect(sd21.tokenize('cat!!')).toEqual([BOS, CAT, 0, 0, EOS]);
    expect(sd21.tokenize('! !! !!!')).toEqual([BOS, 0, 0, 0, 0, 0, 0, EOS]);
  });

  it('splits numbers into single digits', () => {
    expect(sd15.tokenize('2024')).toEqual([BOS, last('2'), last('0'), last('2'), last('4'), EOS]);
  });

  it('falls back to bytes for characters outside the vocabulary (emoji)', () => {
    // 🙂 is UTF-8 F0 9F 99 82: one word of four byte symbols, the last with </w>.
    expect(sd15.tokenize('cat 🙂')).toEqual([BOS, CAT, byteId(0xf0), byteId(0x9f), byteId(0x99), byteId(0x82) + 256, EOS]);
    expect([byteId(0xf0), byteId(0x9f), byteId(0x99), byteId(0x82) + 256]).toEqual([172, 253, 247, 480]);
  });

  it('lowercases one character at a time like HF tokenizers (no Greek final sigma)', () => {
    // Rust lowercases Σ to σ (CF 83) wherever it stands; JavaScript's toLowerCase would give a
    // word-final ς (CF 82). "ΑΣ" → "ασ" = CE B1 CF 83.
    expect(sd15.tokenize('ΑΣ')).toEqual([BOS, byteId(0xce), byteId(0xb1), byteId(0xcf), byteId(0x83) + 256, EOS]);
  });

  it('keeps U+FEFF inside a punctuation run like HF tokenizers', () => {
    // "!\uFEFF!" is one CLIP word (no letter, digit or White_Space) and one byte-level pre-token
    // (Oniguruma's \s does not include U+FEFF): ! EF BB BF !</w>.
    expect(sd15.tokenize('!\uFEFF!')).toEqual([BOS, inner('!'), byteId(0xef), byteId(0xbb), byteId(0xbf), last('!'), EOS]);
  });

  it('matches special tokens written in the prompt', () => {
    expect(sd15.tokenize('a <|endoftext|> cat')).toEqual([BOS, last('a'), EOS, CAT, EOS]);
  });

  it('rejects a prompt that is not a string', () => {
    expect(() => sd15.encode(42 as unknown as string)).toThrow(InvalidArgumentError);
  });
});

describe('CLIP tokenizer settings', () => {
  it('caps model_max_length at 77 and honours a smaller one', async () => {
    const unlimited = await tokenizerOfStyle({ config: { ...SD15_STYLE.config, model_max_length: 1e30 }, map: SD15_STYLE.map });
    expect(unlimited.maxLength).toBe(77);
    const short = await tokenizerOfStyle({ config: { ...SD15_STYLE.config, model_max_length: 8 }, map: SD15_STYLE.map });
    expect(Array.from(short.encode('cat cat cat cat cat cat cat'))).toEqual([BOS, CAT, CAT, CAT, CAT, CAT, CAT, EOS]);
  });

  it('reads a pad token given as an AddedToken object', async () => {
    const tokenizer = await tokenizerOfStyle({ config: { model_max_length: 77 }, map: { ...SD15_STYLE.map, pad_token: addedToken('!', false) } });
    expect(tokenizer.padTokenId).toBe(0);
  });

  it('uses CLIP\'s defaults without tokenizer_config.json and special_tokens_map.json', async () => {
    const tokenizer = await createClipTokenizer(await writeTokenizerFolder({}));
    expect(tokenizer).toMatchObject({ bosTokenId: BOS, eosTokenId: EOS, padTokenId: EOS, maxLength: 77 });
  });

  it('uses a tokenizer.json as is when the folder has one', async () => {
    // A tokenizer.json whose vocabulary has no "hello</w>" merge path: proof it is what gets used.
    const vocab = testVocab();
    const tokenizerJson = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        { id: BOS, content: '<|startoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
        { id: EOS, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      ],
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'RobertaProcessing', sep: ['<|endoftext|>', EOS], cls: ['<|startoftext|>', BOS], trim_offsets: false, add_prefix_space: false },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, vocab, merges: [['c', 'a']] },
    };
    const folder = await writeTokenizerFolder({ 'tokenizer.json': tokenizerJson, 'vocab.json': undefined, 'merges.txt': undefined });
    const tokenizer = await createClipTokenizer(folder);
    // Only "c a" merges: c a t</w> → ca t</w>.
    expect(tokenizer.tokenize('Cat')).toEqual([BOS, 517, last('t'), EOS]);
  });
});

describe('CLIP tokenizer folder errors', () => {
  it('names a missing vocab.json or merges.txt by its full path', async () => {
    for (const name of ['vocab.json', 'merges.txt']) {
      const folder = await writeTokenizerFolder({ 'tokenizer_config.json': SD15_STYLE.config });
      await rm(join(folder, name));
      const error = await createClipTokenizer(folder).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ModelFolderError);
      expect(error).toMatchObject({ problem: 'missing-tokenizer-file', path: join(folder, name) });
      expect((error as Error).message).toContain(join(folder, name));
    }
  });

  it('names a file that is not valid JSON', async () => {
    for (const name of ['tokenizer_config.json', 'special_tokens_map.json', 'vocab.json']) {
      const folder = await writeTokenizerFolder({ 'tokenizer_config.json': SD15_STYLE.config, [name]: '{ "bos_token": ' });
      const error = await createClipTokenizer(folder).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ModelFolderError);
      expect(error).toMatchObject({ problem: 'bad-config', path: join(folder, name) });
      expect((error as Error).message).toContain(join(folder, name));
    }
  });

  it('refuses merges whose symbols are not in the vocabulary, naming the line', async () => {
    const folder = await writeTokenizerFolder({ 'merges.txt': '#version: 0.2\nh e\nq zz\n' });
    await expect(createClipTokenizer(folder)).rejects.toMatchObject({ problem: 'bad-config', path: join(folder, 'merges.txt'), message: expect.stringContaining('line 3') as unknown });
  });
});

// ---------------------------------------------------------------------------------------------
// Goldens: the ids transformers gave for the fixture tokenizers, recorded by
//   python -m streamdiffusion_export tokenizer-ids <fixtures/models/NAME/tokenizer>... \
//     fixtures/tokenizer/prompts.json --out fixtures/goldens/tokenizer-ids.json.gz
// (tools/export; see fixtures/README.md).
// ---------------------------------------------------------------------------------------------

const GOLDEN_FILE = 'tokenizer-ids.json.gz';
const GOLDEN_PATH = join(FIXTURES, 'goldens', GOLDEN_FILE);
/**
 * Golden name → fixture model folder, where they differ. The golden file does not record folders;
 * this mirrors the NAME=DIR arguments of tools/export/scripts/make-fixtures.sh.
 */
const GOLDEN_MODEL_FOLDERS: Readonly<Record<string, string>> = { 'tiny-sd15': 'tiny-sd15-fp16' };

/** What one transformers tokenizer class made of the prompts (`tools/export tokenizer-ids`). */
interface GoldenClassRecord {
  readonly pad_token: string;
  readonly pad_token_id: number;
  readonly bos_token_id: number;
  readonly eos_token_id: number;
  readonly model_max_length: number;
  readonly results: readonly { readonly prompt: string; readonly ids: number[]; readonly unpadded_ids: number[] }[];
}

interface GoldenFile {
  readonly transformers: string;
  readonly max_length: number;
  /** Fixture model name → tokenizer class name → record. */
  readonly tokenizers: Readonly<Record<string, Readonly<Record<string, GoldenClassRecord>>>>;
}

describe('CLIP tokenizer matches transformers on the fixture tokenizers', () => {
  it(`every prompt of ${GOLDEN_PATH}`, async () => {
    // A missing golden file fails here (readGoldenJson throws ENOENT) rather than skipping.
    const golden = (await readGoldenJson(GOLDEN_FILE)) as GoldenFile;
    const names = Object.keys(golden.tokenizers);
    expect(names.length, 'the golden file names no tokenizer').toBeGreaterThan(0);
    const mismatches: string[] = [];
    let compared = 0;
    for (const name of names) {
      const classes = golden.tokenizers[name]!;
      // The Rust-backed class is the reference: transformers 5's CLIPTokenizer, 4.x's CLIPTokenizerFast.
      const className = 'CLIPTokenizerFast' in classes ? 'CLIPTokenizerFast' : 'CLIPTokenizer';
      const record = classes[className];
      expect(record, `${name}: no ${className} record`).toBeDefined();
      const tokenizer = await createClipTokenizer(join(FIXTURES, 'models', GOLDEN_MODEL_FOLDERS[name] ?? name, 'tokenizer'));
      const where = `${name} (${className}, transformers ${golden.transformers})`;
      expect({ bos: tokenizer.bosTokenId, eos: tokenizer.eosTokenId, pad: tokenizer.padTokenId }, where).toEqual({
        bos: record!.bos_token_id,
        eos: record!.eos_token_id,
        pad: record!.pad_token_id,
      });
      expect(tokenizer.maxLength, where).toBe(golden.max_length);
      for (const { prompt, ids, unpadded_ids: unpaddedIds } of record!.results) {
        compared++;
        const unpadded = tokenizer.tokenize(prompt);
        const padded = Array.from(tokenizer.encode(prompt));
        if (JSON.stringify(unpadded) !== JSON.stringify(unpaddedIds)) {
          mismatches.push(`${where} ${JSON.stringify(prompt)}: unpadded ours [${unpadded.join(', ')}], transformers [${unpaddedIds.join(', ')}]`);
        } else if (JSON.stringify(padded) !== JSON.stringify(ids)) {
          mismatches.push(`${where} ${JSON.stringify(prompt)}: padded ours [${padded.join(', ')}], transformers [${ids.join(', ')}]`);
        }
      }
    }
    expect(compared).toBeGreaterThan(0);
    expect(mismatches).toEqual([]);
  });
});
