/**
 * Reads and checks a diffusers `tokenizer/` folder: the one place where its files are parsed, so the
 * rest of the tokenizer can trust what it gets. Every problem is a {@link ModelFolderError} naming the
 * file (`missing-tokenizer-file` for a required file that is absent, `bad-config` for one we cannot use).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ModelFolderError } from '../errors/errors.js';
import type { AddedTokenJson } from './build-clip-tokenizer-json.js';

/** The context length of every CLIP text encoder Stable Diffusion uses (its position embeddings). */
export const CLIP_MAX_LENGTH = 77;

/**
 * A token the tokenizer must match whole in a prompt before any other processing (special tokens
 * such as `<|endoftext|>`, and whatever `added_tokens_decoder` lists). Flags as in HF tokenizers.
 */
export interface AddedTokenSpec {
  readonly content: string;
  /** The id `added_tokens_decoder` gives; named special tokens have none (their id comes from the vocab). */
  readonly id: number | undefined;
  readonly singleWord: boolean;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  /** Matched after normalization (lowercasing…) when true, on the raw prompt when false. */
  readonly normalized: boolean;
  readonly special: boolean;
}

/** What `tokenizer_config.json` and `special_tokens_map.json` say, resolved the way transformers does. */
export interface TokenizerSettings {
  /** Ids per prompt: `model_max_length` capped at (and defaulting to) {@link CLIP_MAX_LENGTH}. */
  readonly maxLength: number;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  /** `null` when the config sets `unk_token` to null: unknown symbols are then dropped. */
  readonly unkToken: string | null;
  /** Tokens to match whole, in the order transformers adds them; a later entry for the same content wins. */
  readonly addedTokens: readonly AddedTokenSpec[];
}

/** The tokenizer files of a folder, parsed and checked. */
export type TokenizerFolderContents =
  | {
      readonly kind: 'tokenizer-json';
      readonly path: string;
      /** `tokenizer.json` as written (an object; the library checks its parts). */
      readonly json: Readonly<Record<string, unknown>>;
      /** Its `model.vocab` when that is a token → id object (empty otherwise). */
      readonly vocab: ReadonlyMap<string, number>;
      /** Its `added_tokens`, with HF tokenizers' defaults filled in. */
      readonly addedTokens: readonly AddedTokenJson[];
      readonly settings: TokenizerSettings;
    }
  | {
      readonly kind: 'vocab-and-merges';
      readonly vocabPath: string;
      /** `vocab.json`: token → id. A Map, because plain-object lookups would see `constructor` & co. */
      readonly vocab: ReadonlyMap<string, number>;
      /** `merges.txt` pairs, highest priority first. */
      readonly merges: readonly (readonly [string, string])[];
      readonly settings: TokenizerSettings;
    };

// CLIPTokenizer's own defaults, used when a config leaves a token out.
const DEFAULT_TOKENS = Object.freeze({
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
});

const addedTokenObjectSchema = z.looseObject({
  content: z.string().describe('The token text.'),
  single_word: z.boolean().optional().describe('Only match it as a whole word.'),
  lstrip: z.boolean().optional().describe('Swallow whitespace on its left.'),
  rstrip: z.boolean().optional().describe('Swallow whitespace on its right.'),
  normalized: z.boolean().optional().describe('Match it in normalized (lowercased…) text rather than the raw prompt.'),
  special: z.boolean().optional().describe('A special token (skipped when decoding with skip_special_tokens).'),
});

/** A special token as transformers saves it: a plain string or a serialized `AddedToken`. */
const tokenSchema = z.union([z.string(), addedTokenObjectSchema]);
type TokenValue = z.infer<typeof tokenSchema>;

const specialTokensSchema = z
  .looseObject({
    bos_token: tokenSchema.nullish().describe('Put before every prompt.'),
    eos_token: tokenSchema.nullish().describe('Put after every prompt.'),
    unk_token: tokenSchema.nullish().describe('Stands for symbols missing from the vocabulary.'),
    pad_token: tokenSchema.nullish().describe('Fills prompts up to the context length (SD1.x "<|endoftext|>", SD2.x "!").'),
    sep_token: tokenSchema.nullish().describe('Unused by CLIP; matched whole when present.'),
    cls_token: tokenSchema.nullish().describe('Unused by CLIP; matched whole when present.'),
    mask_token: tokenSchema.nullish().describe('Unused by CLIP; matched whole when present.'),
    additional_special_tokens: z.array(tokenSchema).nullish().describe('More tokens to match whole.'),
  })
  .describe('special_tokens_map.json (and the same keys in tokenizer_config.json).');

const tokenizerConfigSchema = specialTokensSchema
  .extend({
    model_max_length: z.number().positive().optional().describe('Longest input in tokens (1e30 when unlimited); capped at 77.'),
    added_tokens_decoder: z
      .record(z.string().regex(/^\d+$/), addedTokenObjectSchema)
      .optional()
      .describe('Added tokens by id, as transformers >= 4.34 saves them.'),
  })
  .describe('tokenizer_config.json of a CLIP tokenizer.');

// Only the parts of tokenizer.json we read ourselves; the library checks the rest.
const tokenizerJsonSchema = z.looseObject({
  added_tokens: z
    .array(addedTokenObjectSchema.extend({ id: z.number().int().nonnegative().describe('The token id.') }))
    .default([])
    .describe('Tokens matched whole before normalization or BPE.'),
  model: z
    .looseObject({ vocab: z.union([z.record(z.string(), z.number().int().nonnegative()), z.array(z.unknown())]).optional() })
    .transform((model) => ({ vocab: Array.isArray(model.vocab) ? undefined : model.vocab }))
    .optional()
    .describe('The tokenizer model; for BPE, `vocab` maps token → id.'),
});

function addedTokenJsonOf(token: z.infer<typeof tokenizerJsonSchema>['added_tokens'][number]): AddedTokenJson {
  // HF tokenizers' defaults for fields a tokenizer.json leaves out.
  const special = token.special ?? false;
  return {
    id: token.id,
    content: token.content,
    single_word: token.single_word ?? false,
    lstrip: token.lstrip ?? false,
    rstrip: token.rstrip ?? false,
    normalized: token.normalized ?? !special,
    special,
  };
}

type SpecialTokensFile = z.infer<typeof specialTokensSchema>;
type TokenizerConfigFile = z.infer<typeof tokenizerConfigSchema>;

// The named special tokens, in the order transformers registers them (a later one wins on equal content).
const NAMED_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

/** Reads `folder`: `tokenizer.json` when present, else `vocab.json` + `merges.txt`; configs are optional. */
export async function readTokenizerFolder(folder: string): Promise<TokenizerFolderContents> {
  const configPath = join(folder, 'tokenizer_config.json');
  const mapPath = join(folder, 'special_tokens_map.json');
  const [configText, mapText] = await Promise.all([readOptionalText(configPath), readOptionalText(mapPath)]);
  const config = configText === undefined ? {} : parseWith(tokenizerConfigSchema, parseJson(configText, configPath), configPath);
  const map = mapText === undefined ? undefined : parseWith(specialTokensSchema, parseJson(mapText, mapPath), mapPath);
  const settings = resolveSettings(config, map, { configPath, mapPath });

  const tokenizerJsonPath = join(folder, 'tokenizer.json');
  const tokenizerJsonText = await readOptionalText(tokenizerJsonPath);
  if (tokenizerJsonText !== undefined) {
    const json = parseJson(tokenizerJsonText, tokenizerJsonPath);
    if (!isPlainObject(json)) {
      throw new ModelFolderError({ problem: 'bad-config', path: tokenizerJsonPath, message: 'tokenizer.json is not a JSON object' });
    }
    const { added_tokens: addedTokens, model } = parseWith(tokenizerJsonSchema, json, tokenizerJsonPath);
    const vocab = new Map(Object.entries(model?.vocab ?? {}));
    return { kind: 'tokenizer-json', path: tokenizerJsonPath, json, vocab, addedTokens: addedTokens.map(addedTokenJsonOf), settings };
  }

  const vocabPath = join(folder, 'vocab.json');
  const mergesPath = join(folder, 'merges.txt');
  const [vocabText, mergesText] = await Promise.all([readRequiredText(vocabPath), readRequiredText(mergesPath)]);
  const vocab = parseVocab(parseJson(vocabText, vocabPath), vocabPath);
  const merges = parseMerges(mergesText, mergesPath, vocab);
  return { kind: 'vocab-and-merges', vocabPath, vocab, merges, settings };
}

function resolveSettings(
  config: TokenizerConfigFile,
  map: SpecialTokensFile | undefined,
  paths: { readonly configPath: string; readonly mapPath: string },
): TokenizerSettings {
  const decoder = config.added_tokens_decoder;
  // transformers only reads special_tokens_map.json for configs saved before `added_tokens_decoder`
  // existed, and then lets it override tokenizer_config.json key by key.
  const mapApplies = decoder === undefined && map !== undefined;
  const named: SpecialTokensFile = mapApplies ? { ...config, ...definedEntries(map) } : config;
  const sourceOf = (key: keyof SpecialTokensFile): string => (mapApplies && map[key] !== undefined ? paths.mapPath : paths.configPath);

  const addedTokens: AddedTokenSpec[] = [];
  for (const [id, token] of Object.entries(decoder ?? {}).sort(([a], [b]) => Number(a) - Number(b))) {
    addedTokens.push(specFromObject(token, Number(id), false));
  }
  const fromDecoder = new Set(addedTokens.map((token) => token.content));
  const namedValues: TokenValue[] = [];
  for (const key of NAMED_TOKEN_KEYS) {
    const value = named[key];
    if (value !== undefined && value !== null) namedValues.push(value);
    else if (value === undefined && key in DEFAULT_TOKENS) namedValues.push(DEFAULT_TOKENS[key as keyof typeof DEFAULT_TOKENS]);
  }
  namedValues.push(...(named.additional_special_tokens ?? []));
  for (const value of namedValues) {
    // A name that refers to an `added_tokens_decoder` entry keeps that entry's flags.
    if (fromDecoder.has(tokenContent(value))) continue;
    // transformers registers a string special token as not normalized: matched on the raw prompt.
    addedTokens.push(typeof value === 'string' ? plainSpecial(value) : specFromObject(value, undefined, true));
  }

  const required = (key: 'bos_token' | 'eos_token' | 'pad_token'): string => {
    const value = named[key];
    if (value === null) {
      throw new ModelFolderError({ problem: 'bad-config', path: sourceOf(key), message: `"${key}" is null; a CLIP tokenizer needs one` });
    }
    return value === undefined ? DEFAULT_TOKENS[key] : tokenContent(value);
  };
  const unk = named.unk_token;
  return {
    maxLength: resolveMaxLength(config.model_max_length, paths.configPath),
    bosToken: required('bos_token'),
    eosToken: required('eos_token'),
    padToken: required('pad_token'),
    unkToken: unk === null ? null : unk === undefined ? DEFAULT_TOKENS.unk_token : tokenContent(unk),
    addedTokens,
  };
}

function resolveMaxLength(configured: number | undefined, configPath: string): number {
  if (configured === undefined) return CLIP_MAX_LENGTH;
  // Room for bos + eos at least; a fractional length is a broken config, not something to round.
  if (!Number.isInteger(configured) || configured < 2) {
    throw new ModelFolderError({ problem: 'bad-config', path: configPath, message: `"model_max_length" is ${configured}; expected an integer >= 2` });
  }
  return Math.min(configured, CLIP_MAX_LENGTH);
}

function definedEntries(file: SpecialTokensFile): SpecialTokensFile {
  return Object.fromEntries(Object.entries(file).filter(([, value]) => value !== undefined));
}

function tokenContent(value: TokenValue): string {
  return typeof value === 'string' ? value : value.content;
}

function plainSpecial(content: string): AddedTokenSpec {
  return { content, id: undefined, singleWord: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function specFromObject(token: z.infer<typeof addedTokenObjectSchema>, id: number | undefined, named: boolean): AddedTokenSpec {
  // A named token is special whatever the file says; as in HF tokenizers, `normalized` defaults to `!special`.
  const special = named || (token.special ?? false);
  return {
    content: token.content,
    id,
    singleWord: token.single_word ?? false,
    lstrip: token.lstrip ?? false,
    rstrip: token.rstrip ?? false,
    normalized: token.normalized ?? !special,
    special,
  };
}

function parseVocab(json: unknown, path: string): Map<string, number> {
  if (!isPlainObject(json)) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: 'vocab.json is not a JSON object of token → id' });
  }
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(json)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new ModelFolderError({ problem: 'bad-config', path, message: `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; expected an integer >= 0` });
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new ModelFolderError({ problem: 'bad-config', path, message: 'vocab.json is empty' });
  return vocab;
}

function parseMerges(text: string, path: string, vocab: ReadonlyMap<string, number>): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    // Like HF tokenizers: skip the `#version` header; unlike it, tolerate blank lines (a trailing one is common).
    if (line === '' || line.startsWith('#version')) continue;
    const parts = line.split(' ');
    const [left, right] = parts;
    const where = `line ${index + 1} (${JSON.stringify(line)})`;
    if (parts.length !== 2 || left === undefined || right === undefined || left === '' || right === '') {
      throw new ModelFolderError({ problem: 'bad-config', path, message: `${where} is not two symbols separated by one space` });
    }
    // HF tokenizers refuses merges whose parts or result are missing from the vocabulary; so do we,
    // rather than silently tokenizing differently.
    for (const symbol of [left, right, left + right]) {
      if (!vocab.has(symbol)) {
        throw new ModelFolderError({ problem: 'bad-config', path, message: `${where}: ${JSON.stringify(symbol)} is not in vocab.json` });
      }
    }
    merges.push([left, right]);
  }
  return merges;
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue?.path.join('.') ?? '';
  throw new ModelFolderError({
    problem: 'bad-config',
    path,
    message: `${where === '' ? 'the file' : `"${where}"`}: ${issue?.message ?? 'is invalid'}`,
  });
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ModelFolderError({ problem: 'bad-config', path, message: `not valid JSON: ${(error as Error).message}`, cause: error });
  }
}

async function readRequiredText(path: string): Promise<string> {
  const text = await readOptionalText(path);
  if (text === undefined) {
    throw new ModelFolderError({
      problem: 'missing-tokenizer-file',
      path,
      message: 'the tokenizer needs vocab.json and merges.txt (or a tokenizer.json)',
    });
  }
  return text;
}

async function readOptionalText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ModelFolderError({ problem: 'bad-config', path, message: `cannot read the file: ${(error as Error).message}`, cause: error });
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
