import os from 'node:os';

/** The exit status of a process that stopped because of `signal`: 128 + its number, as a shell reports it. */
export function exitStatusOf(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}
