/** Helpers that turn zod issues into this project's error messages ("field: expected …, got …"). */
import type { z } from 'zod';
import { InvalidArgumentError } from '../errors/errors.js';

/** The value at a zod issue's path inside the raw input, for "got …" in error messages. */
export function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/**
 * What a zod issue expected, worded to follow "expected": zod's "Invalid input: expected number,
 * received string" becomes "number" (the received value is printed as "got …" beside it).
 */
export function expectedOf(issue: z.core.$ZodIssue): string {
  const message = issue.message.replace(/^(Invalid input|Invalid option|Too small|Too big|Invalid string|Invalid number): /, '');
  return message.replace(/^expected /, '').replace(/, received \w+$/, '');
}

/**
 * `value` parsed by `schema`, or an {@link InvalidArgumentError} for its first issue: the field is
 * `field` followed by the issue's path (`controlnets.0.scale`), the value the one at that path, the
 * expectation zod's message. For an option of a wrapper or helper taking one structured argument.
 */
export function parseArgument<Schema extends z.ZodType>(schema: Schema, value: unknown, field: string): z.output<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new InvalidArgumentError({ field: [field, ...issue.path.map(String)].join('.'), value: valueAt(value, issue.path), expected: issue.message });
}
