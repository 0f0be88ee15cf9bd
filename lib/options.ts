import { z } from 'zod';

import { PaceOptionError } from './errors';

/**
 * Validates `value` against a zod schema; on failure throws a PaceOptionError naming each bad field by its
 * path (`options.dtype: Invalid option: expected one of ...`, `normalization.std[1]: ...`), before any native work
 * starts.
 */
export function parseOptions<Schema extends z.ZodType>(schema: Schema, value: unknown, what: string): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${optionPath(what, issue.path)}: ${issue.message}`);
  throw new PaceOptionError(problems.join('; '));
}

/** A field's name in messages: `what` and its path, array indices in brackets (`options.normalization.std[1]`). */
export function optionPath(what: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (name, key) => (typeof key === 'number' ? `${name}[${key}]` : `${name}.${String(key)}`),
    what,
  );
}

/** What a value is, for an error message: `null`, its class's name (`Object`, `Float32Array`), or its type. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'an object';
  return typeof value;
}

/**
 * The longest delay Node's timers take, in ms: past 2³¹ − 1, setTimeout fires after 1 ms instead. Durations users
 * give are bounded by it.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * A file path given to the addon: non-empty, and without a NUL byte (C's file calls end the name there, so
 * `a.safetensors\0.bak` would open `a.safetensors`; Node's fs refuses such paths too).
 */
export const FilePathSchema = z
  .string()
  .min(1, 'must be a non-empty path')
  .refine((path) => !path.includes('\0'), 'must not contain a NUL byte (no file is named so)');
