/** Helpers that turn zod issues into this project's error messages ("field: expected …, got …"). */
import type { z } from 'zod';

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
