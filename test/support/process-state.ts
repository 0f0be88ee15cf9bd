import fs from 'node:fs';

/** Whether /proc says the process is stopped (state T); false once it is gone. */
export function isStopped(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}
