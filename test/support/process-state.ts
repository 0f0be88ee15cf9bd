import { processState } from '../../lib/process-alive';

/** Whether /proc says the process is stopped (state T); false once it is gone. */
export const isStopped = (pid: number): boolean => processState(pid) === 'T';

/** Waits up to `ms` for the process to be stopped; whether it is. */
export async function stoppedWithin(pid: number, ms = 5_000): Promise<boolean> {
  for (let waited = 0; !isStopped(pid) && waited < ms; waited += 10) await new Promise((r) => setTimeout(r, 10));
  return isStopped(pid);
}
