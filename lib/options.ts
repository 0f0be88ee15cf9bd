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
  const problems = explained(result.error.issues, value).map(
    ({ path, message }) => `${optionPath(what, path)}: ${message}`,
  );
  throw new PaceOptionError(problems.join('; '));
}

/** One problem of a value: where, and what. */
interface Problem {
  path: PropertyKey[];
  message: string;
}

/**
 * zod's issues, with a failed union (`false` or an object, say) told apart: a value of one branch's kind gets that
 * branch's own problems (`schedule.warmupEpochs: expected int`), any other the kinds it could be; zod says only
 * "Invalid input" of the union.
 */
function explained(issues: readonly z.core.$ZodIssue[], value: unknown, base: PropertyKey[] = []): Problem[] {
  return issues.flatMap((issue): Problem[] => {
    const path = [...base, ...issue.path];
    if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [{ path, message: issue.message }];
    const ofItsKind = issue.errors
      .filter((branch) => !branch.some(notOfTheKind))
      .sort((a, b) => a.length - b.length)[0];
    if (ofItsKind) return explained(ofItsKind, value, path);
    const kinds = issue.errors.flatMap((branch) => branch.filter(notOfTheKind).map(expectedKind));
    return [{ path, message: `expected ${[...new Set(kinds)].join(' or ')}, got ${shownValue(valueAt(value, path))}` }];
  });
}

/** A union branch's problem with the value as a whole: it is not of the branch's type or value. */
const notOfTheKind = (issue: z.core.$ZodIssue) =>
  issue.path.length === 0 && (issue.code === 'invalid_type' || issue.code === 'invalid_value');

/** What a branch of a union expected, from its problem with the value as a whole. */
function expectedKind(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type') return issue.expected === 'object' ? 'an object' : issue.expected;
  if (issue.code === 'invalid_value') return issue.values.map((v) => JSON.stringify(v)).join(' or ');
  return issue.message;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>((at, key) => (at as Record<PropertyKey, unknown> | undefined)?.[key], value);
}

/** A value in an error message: short JSON for plain values, its kind for others. */
function shownValue(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') {
    const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
    return text.length > 40 ? `${text.slice(0, 40)}...` : text;
  }
  return describeValue(value);
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
