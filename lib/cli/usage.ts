import type { ParseArgsConfig } from 'node:util';

import type { z } from 'zod';

import { PaceOptionError } from '../errors';
import { optionPath } from '../options';

/** A command's flags, as node:util's parseArgs takes them. */
export type Flags = NonNullable<ParseArgsConfig['options']>;

/** A command's usage text and its implementation; it returns the process exit code. */
export interface Command {
  /** One line for `pace --help`'s list. */
  summary: string;
  usage: string;
  /** The flags it parses, as node:util's parseArgs takes them (tests hold usage and README to them). */
  flags: Flags;
  run(args: string[]): Promise<number>;
}

/** A mistake in the command line (a PaceOptionError): printed with the command's usage, exit code 2. */
export class UsageError extends PaceOptionError {}

/** A decimal number as people write one (`3`, `-0.5`, `1e-3`); Number() also reads `0x10`, `0b11` and `0o7`. */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;

/** A flag's value as a finite decimal number, or a UsageError naming the flag. */
export function numberFlag(name: string, text: string): number {
  const value = Number(text);
  if (!DECIMAL.test(text.trim()) || !Number.isFinite(value)) {
    throw new UsageError(`${name} must be a number, got '${text}'`);
  }
  return value;
}

/** A flag's value as a whole number from `min` (and up to `max`), or a UsageError naming the flag. */
export function wholeNumberFlag(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = numberFlag(name, text);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `from ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`${name} must be a whole number ${range}, got '${text}'`);
  }
  return value;
}

/** A `--device` value: cpu, cuda or cuda:<index> (whether that GPU exists is the model's to say), or a UsageError. */
export function deviceFlag(text: string): string {
  if (!/^(cpu|cuda(:\d+)?)$/.test(text)) {
    throw new UsageError(`--device must be cpu, cuda or cuda:<index>, got '${text}'`);
  }
  return text;
}

/** Command-line arguments up to the first `--` (what follows it belongs to another command). */
export function ownArguments(args: string[]): string[] {
  const split = args.indexOf('--');
  return split < 0 ? args : args.slice(0, split);
}

/**
 * Validates options that flags and a file set together. A problem with a value a flag gave is a UsageError naming
 * the flag (`flagOf` maps an option's dotted path to the flag that set it, if one did); any other is a
 * PaceOptionError naming `what` and the field, as parseOptions does.
 */
export function parseWithFlags<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
  what: string,
  flagOf: (path: string) => string | undefined,
): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const fromFlag = issues.map((issue) => flagOf(issue.path.map(String).join('.')));
  const flag = fromFlag.find((name) => name !== undefined);
  if (flag !== undefined) {
    throw new UsageError(`${flag}: ${issues[fromFlag.indexOf(flag)].message}`);
  }
  const problems = issues.map((issue) => `${optionPath(what, issue.path)}: ${issue.message}`);
  throw new PaceOptionError(problems.join('; '));
}
