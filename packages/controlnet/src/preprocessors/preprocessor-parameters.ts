/**
 * Helpers shared by the preprocessors' parameter schemas, and the one place their raw parameters
 * (`preprocessor_params` in config files) become typed values or a typed error.
 */
import { InvalidArgumentError, valueAt, type ParameterMeta } from '@streamdiffusion/core';
import type { z } from 'zod';
import type { PreprocessorDefinition } from './preprocessor.js';

/**
 * A preprocessor parameter: its description and the `hot` update kind (every preprocessor
 * parameter changes between two frames without reloading anything), attached in one step so no
 * field forgets either.
 */
export function hotParameter<T extends z.ZodType>(schema: T, description: string): T {
  const meta: ParameterMeta = { update: 'hot' };
  return schema.describe(description).meta({ ...meta });
}

/**
 * What an issue expected, worded to follow "expected": our fields carry their own wording ("an
 * integer from 0 to 255"); zod's own ("Invalid input: expected object, received number") loses its
 * prefix and the received type (the value is printed beside it).
 */
function expectedOf(issue: z.core.$ZodIssue): string {
  return issue.message
    .replace(/^(Invalid input|Invalid option|Too small|Too big|Invalid number): /, '')
    .replace(/^expected /, '')
    .replace(/, received \w+$/, '');
}

/**
 * Validates a preprocessor's raw parameters (a config file's `preprocessor_params`; undefined means
 * all defaults) with its schema. A bad value raises `InvalidArgumentError` naming the field
 * (`preprocessor_params.low_threshold`, under `options.field` when given, e.g.
 * `controlnets.0.preprocessor_params`), the value and what was expected.
 */
export function parsePreprocessorParameters<Parameters extends object>(
  definition: PreprocessorDefinition<Parameters>,
  raw: unknown,
  options: { readonly field?: string } = {},
): Parameters {
  const input = raw ?? {};
  const result = definition.parameters.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue?.path ?? [];
  throw new InvalidArgumentError({
    field: [options.field ?? 'preprocessor_params', ...path.map(String)].join('.'),
    value: path.length === 0 ? input : valueAt(input, path),
    expected: `${issue === undefined ? 'valid parameters' : expectedOf(issue)} (preprocessor "${definition.name}")`,
  });
}
