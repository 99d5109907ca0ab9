/**
 * Command-line flags generated from the parameter schemas (DESIGN §5: one zod schema per parameter
 * set is the single source). Each top-level key becomes `--kebab-case`; its description, choices and
 * default come from the schema, and its value is converted by the field's type (numbers, integers,
 * comma-separated lists, enums, booleans with `--no-…`, JSON for structured values). What the flags
 * give is then validated by the same schema as a config file, so errors read the same.
 */
import { Option } from 'commander';
import type { z } from 'zod';

/** How a flag's text becomes the field's value. */
export type FlagKind = 'string' | 'number' | 'integer' | 'boolean' | 'enum' | 'number-list' | 'json';

/** One flag made from a schema field. */
export interface SchemaFlag {
  /** The schema key (`t_index_list`). */
  readonly key: string;
  /** The flag (`--t-index-list`). */
  readonly flag: string;
  readonly kind: FlagKind;
  readonly description: string;
  readonly choices?: readonly string[];
  /** The schema's default, shown in help. */
  readonly defaultValue?: unknown;
}

interface Def {
  readonly type: string;
  readonly innerType?: z.ZodType;
  readonly element?: z.ZodType;
  readonly defaultValue?: unknown;
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { def: Def }).def;

/** The field without its default/optional wrappers, and its default. */
function unwrap(schema: z.ZodType): { readonly inner: z.ZodType; readonly defaultValue?: unknown } {
  let inner = schema;
  let defaultValue: unknown;
  for (;;) {
    const def = defOf(inner);
    if (def.type === 'default') {
      const value = def.defaultValue;
      defaultValue = typeof value === 'function' ? (value as () => unknown)() : value;
      inner = def.innerType!;
    } else if (def.type === 'optional' || def.type === 'nullable') {
      inner = def.innerType!;
    } else {
      return defaultValue === undefined ? { inner } : { inner, defaultValue };
    }
  }
}

function kindOf(inner: z.ZodType): FlagKind {
  const def = defOf(inner);
  if (def.type === 'string') return 'string';
  if (def.type === 'boolean') return 'boolean';
  if (def.type === 'enum') return 'enum';
  if (def.type === 'number') return (inner as z.ZodNumber).format === 'safeint' ? 'integer' : 'number';
  if (def.type === 'array' && defOf(def.element!).type === 'number') return 'number-list';
  return 'json';
}

/** `t_index_list` → `t-index-list`. */
export const kebab = (key: string): string => key.replaceAll('_', '-');

/** The flags of a shape's fields, in the shape's order; `omit` leaves keys out. */
export function schemaFlags(shape: Readonly<Record<string, z.ZodType>>, omit: readonly string[] = []): SchemaFlag[] {
  return Object.entries(shape)
    .filter(([key]) => !omit.includes(key))
    .map(([key, schema]) => {
      const { inner, defaultValue } = unwrap(schema);
      const kind = kindOf(inner);
      const hint = kind === 'number-list' ? ' (comma-separated)' : kind === 'json' ? ' (JSON)' : '';
      return {
        key,
        flag: `--${kebab(key)}`,
        kind,
        description: `${schema.description ?? inner.description ?? key}${hint}`,
        ...(kind === 'enum' ? { choices: (inner as z.ZodEnum).options.map(String) } : {}),
        ...(defaultValue === undefined ? {} : { defaultValue }),
      };
    });
}

const placeholder: Record<FlagKind, string> = { string: '<text>', number: '<number>', integer: '<integer>', boolean: '', enum: '<choice>', 'number-list': '<numbers>', json: '<json>' };

/** commander options for the flags (booleans get a `--no-…` twin when their default is true). */
export function commanderOptions(flags: readonly SchemaFlag[]): Option[] {
  return flags.flatMap((flag) => {
    if (flag.kind === 'boolean') {
      const on = new Option(flag.flag, flag.description);
      return flag.defaultValue === true ? [on, new Option(`--no-${kebab(flag.key)}`, `turn ${flag.flag} off (default on)`)] : [on];
    }
    // The schema's default is shown, not set: an absent flag leaves a config file's value in force.
    const shown = flag.defaultValue === undefined ? '' : ` (default: ${Array.isArray(flag.defaultValue) ? flag.defaultValue.join(',') : JSON.stringify(flag.defaultValue)})`;
    const option = new Option(`${flag.flag} ${placeholder[flag.kind]}`, `${flag.description}${shown}`);
    if (flag.choices !== undefined) option.choices(flag.choices);
    return [option];
  });
}

/** A flag's text that is not of its kind. */
export class FlagValueError extends Error {
  constructor(
    readonly flag: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`${flag}: expected ${expected}, got ${JSON.stringify(value)}`);
    this.name = 'FlagValueError';
  }
}

/** The fields the given flags set, converted (commander's parsed options in, schema keys out). */
export function flagValues(flags: readonly SchemaFlag[], options: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const flag of flags) {
    // commander camel-cases option names: --t-index-list → tIndexList.
    const name = kebab(flag.key).replace(/-([a-z])/g, (_match, letter: string) => letter.toUpperCase());
    const raw = options[name];
    if (raw === undefined) continue;
    if (flag.kind === 'boolean') {
      values[flag.key] = raw === true;
      continue;
    }
    const text = typeof raw === 'string' ? raw : JSON.stringify(raw);
    values[flag.key] = convert(flag, text);
  }
  return values;
}

function convert(flag: SchemaFlag, text: string): unknown {
  switch (flag.kind) {
    case 'string':
    case 'enum':
      return text;
    case 'number':
    case 'integer': {
      const value = Number(text);
      if (text.trim() === '' || !Number.isFinite(value)) throw new FlagValueError(flag.flag, text, flag.kind === 'integer' ? 'an integer' : 'a number');
      return value;
    }
    case 'number-list': {
      const parts = text.split(',').map((part) => part.trim());
      const values = parts.map(Number);
      if (parts.some((part) => part === '') || values.some((value) => !Number.isFinite(value))) throw new FlagValueError(flag.flag, text, 'comma-separated numbers (32,45)');
      return values;
    }
    case 'json':
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new FlagValueError(flag.flag, text, 'JSON');
      }
    case 'boolean':
      return text === 'true';
  }
}
