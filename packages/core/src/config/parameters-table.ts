import type { z } from 'zod';
import { streamParametersShape, type ParameterMeta } from './stream-parameters.js';

/** The value a field defaults to, read from its schema (undefined when it has none). */
function defaultOf(schema: z.ZodType): unknown {
  const result = schema.safeParse(undefined);
  return result.success ? result.data : undefined;
}

/**
 * The pipeline parameters as a Markdown table (key, default, when a change applies, meaning),
 * generated from the one schema so the README cannot drift from it.
 */
export function parametersMarkdownTable(): string {
  const rows = Object.entries(streamParametersShape).map(([key, schema]) => {
    const meta = schema.meta() as ParameterMeta | undefined;
    const fallback = defaultOf(schema);
    const shown = fallback === undefined ? '—' : `\`${JSON.stringify(fallback)}\``;
    const description = (schema.description ?? '').replaceAll('|', '\\|');
    return `| \`${key}\` | ${shown} | ${meta?.update ?? '—'} | ${description} |`;
  });
  return ['| key | default | change applies | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
