import type { z } from 'zod';

import { PaceOptionError } from './errors';

/**
 * Validates `value` against a zod schema; on failure throws a PaceOptionError naming each bad field by its
 * path (`options.dtype: Invalid option: expected one of ...`), before any native work starts.
 */
export function parseOptions<Schema extends z.ZodType>(schema: Schema, value: unknown, what: string): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const where = [what, ...issue.path.map(String)].join('.');
    return `${where}: ${issue.message}`;
  });
  throw new PaceOptionError(problems.join('; '));
}
