import type { z } from 'zod';

import { PaceOptionError } from '../errors';

/**
 * Validates `value` against a zod schema, as `parseOptions` does, naming each bad field with array indices in
 * brackets (`normalization.std[1]: ...`); throws a PaceOptionError before any work starts.
 */
export function parseDataOptions<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
  what: string,
): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${fieldName(what, issue.path)}: ${issue.message}`);
  throw new PaceOptionError(problems.join('; '));
}

function fieldName(what: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (name, key) => (typeof key === 'number' ? `${name}[${key}]` : `${name}.${String(key)}`),
    what,
  );
}
