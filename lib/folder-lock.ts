import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { PaceBusyError } from './errors';
import { processAlive } from './process-alive';
import { linkOrCopyExclusive, writeFileAtomic } from './train/run-folder';

/** Who holds a folder's lock: a process on a host (the folder may be on a shared file system). */
interface Holder {
  pid: number;
  hostname: string;
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** What a lock guards, for its messages: `{ folder: 'sweep folder', user: 'sweep' }`. */
export interface LockUse {
  folder: string;
  user: string;
}

/** The locks this process holds, by real path: a second claim from this process is refused, not shared. */
const heldHere = new Set<string>();

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
      linkOrCopyExclusive(aside, lock);
    } catch (error) {
      // taken yet again meanwhile: that process holds it now
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

const ATTEMPTS = 10;

function waitMilliseconds(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Takes a folder's lock: `{pid, hostname}` written to a file of our own, then hard-linked to the lock's name,
 * which fails when the name exists, so of processes starting together exactly one gets it. A lock held by a
 * process of this host that is gone is broken (see {@link breakStale}) and taken; so is one naming this process
 * that it does not hold (a restarted container reuses pids). A lock of another host is refused, whatever its
 * pid, as this host cannot tell whether its holder still runs; so is a second claim from this process.
 * Returns the function releasing it.
 */
export function takeLock(dir: string, lock: string, use: LockUse): () => void {
  const { folder, user } = use;
  const key = path.join(fs.realpathSync(path.dirname(lock)), path.basename(lock));
  if (heldHere.has(key)) {
    throw new PaceBusyError(`the ${folder} ${dir} is in use by another ${user} of this process (${process.pid})`);
  }
  const hostname = os.hostname();
  const mine = `${lock}.tmp-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  writeFileAtomic(mine, `${JSON.stringify({ pid: process.pid, hostname })}\n`);
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        linkOrCopyExclusive(mine, lock);
        heldHere.add(key);
        return () => releaseLock(lock, key);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const held = readLock(lock);
      if (held === undefined) continue; // released meanwhile
      if (held === '') {
        waitMilliseconds(20); // a copy being made (no hard links here): its holder is written next
        continue;
      }
      const holder = parseHolder(held);
      if (!holder) {
        throw new PaceBusyError(
          `the ${folder} ${dir} is locked by ${lock}, which names no process ` +
            `(${JSON.stringify(held.slice(0, 80))}): if no ${user} is using the folder, remove the lock file`,
        );
      }
      if (holder.hostname !== hostname) {
        throw new PaceBusyError(
          `the ${folder} ${dir} is in use by process ${holder.pid} on host ${holder.hostname} (${lock}): ` +
            `if that ${user} is gone, remove the lock file`,
        );
      }
      if (holder.pid !== process.pid && processAlive(holder.pid)) {
        throw new PaceBusyError(`the ${folder} ${dir} is in use by process ${holder.pid} (${lock})`);
      }
      breakStale(lock, held);
    }
    throw new PaceBusyError(`the ${folder} ${dir}: could not take its lock ${lock} (other processes keep taking it)`);
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/** Releases the lock if this process holds it (a lock already gone, or another's, is left as it is). */
function releaseLock(lock: string, key: string): void {
  heldHere.delete(key);
  let holder: Holder | undefined;
  try {
    const held = readLock(lock);
    holder = held === undefined ? undefined : parseHolder(held);
  } catch {
    return; // unreadable: not ours to remove
  }
  if (holder?.pid === process.pid && holder.hostname === os.hostname()) fs.rmSync(lock, { force: true });
}
