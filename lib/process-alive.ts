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
  const state = processState(pid);
  return state !== 'Z' && state !== 'X';
}

/** A process's state letter in /proc (`R`, `S`, `T` stopped, `Z` zombie, …), or undefined when it is gone (Linux). */
export function processState(pid: number): string | undefined {
  return procStat(pid)?.[0];
}

/**
 * When a process of this host started, in clock ticks since boot (Linux; undefined elsewhere or when it is gone):
 * with its pid, it tells a process from a later one given the same pid (a restarted container reuses pids).
 */
export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/** The fields of /proc/<pid>/stat after the command's name (the state first), or undefined. */
function procStat(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) S ...": the command may hold spaces and parentheses; the fields follow the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * This process's boot and pid namespace (Linux), `<boot id>/pid:[<inode>]`, or undefined where /proc does not tell:
 * containers that share their host's name (Docker's `--network host`) do not share its pids, so a pid recorded by
 * a process of another namespace cannot be looked up here.
 */
export function processNamespace(): string | undefined {
  try {
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}/${fs.readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    return undefined;
  }
}
