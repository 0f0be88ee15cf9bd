import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

import { PaceBusyError } from '../errors';
import { processAlive } from '../process-alive';
import { writeFileAtomic } from '../train/run-folder';

/** Who holds a sweep folder's lock: a process on a host (a sweep folder may be on a shared file system). */
interface Holder {
  pid: number;
  hostname: string;
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** A lock's holder from its text: `{"pid":…,"hostname":…}`, or a bare pid (an older sweep's lock: this host's). */
function parseHolder(text: string): Holder | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return { pid: Number(trimmed), hostname: os.hostname() };
  try {
    const { pid, hostname } = JSON.parse(trimmed) as Partial<Holder>;
    if (Number.isInteger(pid) && (pid as number) > 0 && typeof hostname === 'string') {
      return { pid: pid as number, hostname };
    }
  } catch {
    // not JSON: no holder
  }
  return undefined;
}

/** The lock's text; undefined once it is gone (released). */
function readLock(lock: string): string | undefined {
  try {
    return fs.readFileSync(lock, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Removes a lock whose holder is gone, if it still holds `stale`: the lock is renamed to a name of our own first
 * (of processes doing this together, one rename wins; the others find it gone), then what was moved is checked.
 * A lock another process took between our read and our rename is put back.
 */
function breakStale(lock: string, stale: string): void {
  const aside = `${lock}.stale-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  try {
    fs.renameSync(lock, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  try {
    if (readLock(aside) === stale) return;
    try {
      fs.linkSync(aside, lock);
    } catch (error) {
      // taken yet again meanwhile: that process holds it now
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

const ATTEMPTS = 10;

/**
 * Takes a sweep folder's lock: `{pid, hostname}` written to a file of our own, then hard-linked to the lock's
 * name, which fails when the name exists, so of processes starting together exactly one gets it. A lock held by
 * a process of this host that is gone is broken (see {@link breakStale}) and taken; a lock of another host is
 * refused, whatever its pid, as this host cannot tell whether that sweep still runs.
 */
export function takeLock(dir: string, lock: string): void {
  const hostname = os.hostname();
  const mine = `${lock}.tmp-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  writeFileAtomic(mine, `${JSON.stringify({ pid: process.pid, hostname })}\n`);
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        fs.linkSync(mine, lock);
        return;
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const held = readLock(lock);
      if (held === undefined) continue; // released meanwhile
      const holder = parseHolder(held);
      if (!holder) {
        throw new PaceBusyError(
          `the sweep folder ${dir} is locked by ${lock}, which names no process ` +
            `(${JSON.stringify(held.slice(0, 80))}): if no sweep is using the folder, remove the lock file`,
        );
      }
      if (holder.hostname !== hostname) {
        throw new PaceBusyError(
          `the sweep folder ${dir} is in use by process ${holder.pid} on host ${holder.hostname} (${lock}): ` +
            'if that sweep is gone, remove the lock file',
        );
      }
      if (holder.pid === process.pid) return;
      if (processAlive(holder.pid)) {
        throw new PaceBusyError(`the sweep folder ${dir} is in use by process ${holder.pid} (${lock})`);
      }
      breakStale(lock, held);
    }
    throw new PaceBusyError(
      `the sweep folder ${dir}: could not take its lock ${lock} (other processes keep taking it)`,
    );
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/** Releases the lock if this process holds it (a lock already gone, or another's, is left as it is). */
export function releaseLock(lock: string): void {
  let holder: Holder | undefined;
  try {
    const held = readLock(lock);
    holder = held === undefined ? undefined : parseHolder(held);
  } catch {
    return; // unreadable: not ours to remove
  }
  if (holder?.pid === process.pid && holder.hostname === os.hostname()) fs.rmSync(lock, { force: true });
}
