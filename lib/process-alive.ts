import fs from 'node:fs';

/**
 * Whether a process of this host is running (one of another user counts: it exists). A zombie, one that has exited
 * but that its parent (after a SIGKILLed launcher, often an init that reaps late) has not reaped, is not.
 */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !exited(pid);
}

/** Linux: the process's state in /proc is zombie or dead. Elsewhere (no /proc) nothing is known: false. */
function exited(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // "pid (comm) S ...": the command may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}
