import { PaceOptionError } from '../errors';

/** A command's usage text and its implementation; it returns the process exit code. */
export interface Command {
  usage: string;
  run(args: string[]): Promise<number>;
}

/** A mistake in the command line (a PaceOptionError): printed with the command's usage, exit code 2. */
export class UsageError extends PaceOptionError {}

/** A flag's value as a finite number, or a UsageError naming the flag. */
export function numberFlag(name: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new UsageError(`${name} must be a number, got '${text}'`);
  return value;
}
