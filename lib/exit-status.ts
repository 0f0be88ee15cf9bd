import os from 'node:os';

/** The exit status of a process that stopped because of `signal`: 128 + its number, as a shell reports it. */
export function exitStatusOf(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/**
 * The exit status of a `pace` command that stopped on a `PaceDistributedError`: a collective failed, most often
 * because another rank failed first. `pace launch` names a rank that failed otherwise, when one did, as the cause.
 */
export const DISTRIBUTED_FAILURE_STATUS = 3;
