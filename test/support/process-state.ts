import { processState } from '../../lib/process-alive';

/** Whether /proc says the process is stopped (state T); false once it is gone. */
export const isStopped = (pid: number): boolean => processState(pid) === 'T';
