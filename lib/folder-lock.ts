import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { PaceBusyError } from './errors';
import { linkOrCopyExclusive, writeFileAtomic } from './files';
import { processAlive, processNamespace, processStartTime } from './process-alive';

/**
 * Who holds a folder's lock: a process on a host (the folder may be on a shared file system), with its start time
 * where the host tells it (a later process given the same pid, as in a restarted container, is not the holder), and
 * the boot and pid namespace its pid belongs to (`processes`): containers that share their host's name (Docker's
 * `--network host`, Kubernetes' `hostNetwork`) do not share its pids, so a holder of another namespace counts as
 * another host's, whose pid means nothing here.
 */
interface Holder {
  pid: number;
  hostname: string;
  started?: string;
  processes?: string;
}

/** Whether the holder's pid can be looked up here: the same host, and the same pid namespace where both record it. */
function pidsShared(holder: Holder, me: Holder): boolean {
  if (holder.hostname !== me.hostname) return false;
  return holder.processes === undefined || me.processes === undefined || holder.processes === me.processes;
}

/** The refusals of a lock held by a running process (this one's other user, or another's): waiting may get it. */
const heldByLiveProcess = new WeakSet<object>();

/** Whether `error` is a refusal of a lock held by a running process, which may be waited out. */
export function lockHeldByLiveProcess(error: unknown): boolean {
  return typeof error === 'object' && error !== null && heldByLiveProcess.has(error);
}

/** The PaceBusyError for a lock a running process holds. */
function heldError(message: string): PaceBusyError {
  const error = new PaceBusyError(message);
  heldByLiveProcess.add(error);
  return error;
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** What a lock guards, for its messages: `{ folder: 'sweep folder', user: 'sweep' }`. */
export interface LockUse {
  folder: string;
  user: string;
}

/** How often a holder touches its lock, and how long another host waits, untouched, before it takes the lock over. */
export interface LockTiming {
  heartbeatSeconds: number;
  staleSeconds: number;
}

const DEFAULT_TIMING: LockTiming = { heartbeatSeconds: 15, staleSeconds: 120 };

/** The locks this thread holds, by real path: a second claim from this thread is refused, not shared. */
const heldHere = new Set<string>();

/** A lock's holder from its text: `{"pid":…,"hostname":…}`, or a bare pid (an older sweep's lock: this host's). */
function parseHolder(text: string): Holder | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return { pid: Number(trimmed), hostname: os.hostname() };
  try {
    const { pid, hostname, started, processes } = JSON.parse(trimmed) as Partial<Holder>;
    if (Number.isInteger(pid) && (pid as number) > 0 && typeof hostname === 'string') {
      return {
        pid: pid as number,
        hostname,
        ...(typeof started === 'string' && { started }),
        ...(typeof processes === 'string' && { processes }),
      };
    }
  } catch {
    // not JSON: no holder
  }
  return undefined;
}

/** When the lock was last touched; undefined once it is gone (released). */
function modifiedAt(lock: string): number | undefined {
  try {
    return fs.statSync(lock).mtimeMs;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
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

/** A breaker older than this was left by a process that died while breaking (a break takes milliseconds). */
const BREAKER_STALE_SECONDS = 10;

/**
 * Removes a lock whose holder is gone, if it still holds `stale`, while holding `<lock>.break` (taken as the lock
 * is: one of the processes breaking it together gets it). Only a breaker removes a lock, and only after reading the
 * stale text under the breaker, so a lock taken after the stale one was read is never moved or removed: no other
 * process can change the name meanwhile (its holder is gone; taking needs the name free; breaking needs the
 * breaker). Returns false when another process holds the breaker (look at the lock again once it is gone).
 */
function breakStale(lock: string, stale: string, mine: string): boolean {
  const breaker = `${lock}.break`;
  try {
    linkOrCopyExclusive(mine, breaker);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  }
  try {
    if (readLock(lock) === stale) fs.rmSync(lock, { force: true });
  } finally {
    fs.rmSync(breaker, { force: true });
  }
  return true;
}

/**
 * Waits while another process breaks the lock (holds `<lock>.break`); refuses, naming it, a breaker untouched for
 * {@link BREAKER_STALE_SECONDS}, already when this process wrote its own file or while it waited: its process died
 * half-way, and removing it here could let two processes break.
 */
function waitForBreaker(dir: string, lock: string, mine: string, { folder, user }: LockUse): void {
  const breaker = `${lock}.break`;
  const waitStart = Date.now();
  for (;;) {
    const touched = modifiedAt(breaker);
    if (touched === undefined) return;
    // On the folder's own clock when our file was written, then on ours while we wait.
    const age = (fs.statSync(mine).mtimeMs - touched) / 1000;
    const waited = (Date.now() - waitStart) / 1000;
    if (Math.max(age, waited) > BREAKER_STALE_SECONDS) {
      const by = parseHolder(readLock(breaker) ?? '');
      const who = by ? `process ${by.pid} on host ${by.hostname}` : 'a process';
      throw new PaceBusyError(
        `the ${folder} ${dir}: ${who} stopped while breaking the stale lock ${lock} and left ${breaker} ` +
          `(untouched for ${Math.round(Math.max(age, waited))} s): if no ${user} is using the folder, remove it`,
      );
    }
    waitMilliseconds(20);
  }
}

const ATTEMPTS = 10;

function waitMilliseconds(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Why a lock's holder is taken to be running, or undefined when it is gone. */
function liveHolder(holder: Holder, me: Holder, lockAge: number, timing: LockTiming): string | undefined {
  if (!pidsShared(holder, me)) {
    if (lockAge > timing.staleSeconds) return undefined;
    const where =
      holder.hostname === me.hostname
        ? `in another container of host ${holder.hostname}`
        : `on host ${holder.hostname}`;
    return (
      `by process ${holder.pid} ${where}, which touched its lock ${Math.round(lockAge)} s ago ` +
      `(a lock untouched for ${timing.staleSeconds} s is taken over)`
    );
  }
  const sameProcess = holder.pid === me.pid && holder.started !== undefined && holder.started === me.started;
  if (sameProcess) return `by another thread of this process (${me.pid})`;
  if (holder.pid === me.pid || !processAlive(holder.pid)) return undefined;
  // a later process given the holder's pid (a restarted container) does not hold it
  if (holder.started !== undefined && processStartTime(holder.pid) !== holder.started) return undefined;
  return `by process ${holder.pid}`;
}

/**
 * Takes a folder's lock: `{pid, hostname, started}` written to a file of our own, then linked to the lock's name
 * (an exclusive copy where there are no hard links), which fails when the name exists, so of processes starting
 * together exactly one gets it. While held, it is touched every `heartbeatSeconds`. A lock whose holder is gone is
 * broken (see {@link breakStale}) and taken: on this host when its process is no longer running (or the pid is
 * another process's now); from another host, which cannot be asked, once untouched for `staleSeconds`. A second
 * claim from this process, by this thread or another, is refused. Returns the function releasing it.
 *
 * A holder that was not running for `staleSeconds` (a suspended machine, a stopped process) may find on waking that
 * another host took its lock over: its next heartbeat sees that and calls `onLost` with the lock's new holder (or
 * that it is gone), once; from then on the folder is not its to write.
 */
export function takeLock(
  dir: string,
  lock: string,
  use: LockUse,
  timing: LockTiming = DEFAULT_TIMING,
  onLost?: (now: string) => void,
): () => void {
  const { folder, user } = use;
  const key = path.join(fs.realpathSync(path.dirname(lock)), path.basename(lock));
  if (heldHere.has(key)) {
    throw heldError(`the ${folder} ${dir} is in use by another ${user} of this process (${process.pid})`);
  }
  const started = processStartTime(process.pid);
  const processes = processNamespace();
  const me: Holder = {
    pid: process.pid,
    hostname: os.hostname(),
    ...(started !== undefined && { started }),
    ...(processes !== undefined && { processes }),
  };
  const mine = `${lock}.tmp-${process.pid}-${crypto.randomInt(1e9)}`;
  writeFileAtomic(mine, `${JSON.stringify(me)}\n`);
  try {
    let held: string | undefined;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        linkOrCopyExclusive(mine, lock);
        heldHere.add(key);
        return holdLock(lock, key, me, timing, onLost);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      held = readLock(lock);
      if (held === undefined) continue; // released meanwhile
      if (held === '') {
        waitMilliseconds(20); // a copy being made (no hard links here): its holder is written next
        continue;
      }
      const holder = parseHolder(held);
      if (!holder) break;
      const touched = modifiedAt(lock);
      if (touched === undefined) continue; // released meanwhile
      // The age on the folder's own clock: our file was just written there.
      const lockAge = (fs.statSync(mine).mtimeMs - touched) / 1000;
      const live = liveHolder(holder, me, lockAge, timing);
      if (live) throw heldError(`the ${folder} ${dir} is in use ${live} (${lock})`);
      if (!breakStale(lock, held, mine)) waitForBreaker(dir, lock, mine, use);
    }
    if (held !== undefined && !parseHolder(held)) {
      throw new PaceBusyError(
        `the ${folder} ${dir} is locked by ${lock}, which names no process ` +
          `(${JSON.stringify(held.slice(0, 80))}): if no ${user} is using the folder, remove the lock file`,
      );
    }
    throw new PaceBusyError(`the ${folder} ${dir}: could not take its lock ${lock} (other processes keep taking it)`);
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/** Touches the lock while it is held, as long as it is this process's; returns its release. */
function holdLock(
  lock: string,
  key: string,
  me: Holder,
  timing: LockTiming,
  onLost: ((now: string) => void) | undefined,
): () => void {
  const heartbeat = setInterval(() => {
    // Read and rewritten through one descriptor: a lock broken and taken meanwhile is a new file, which this
    // process neither reads as its own nor writes.
    let fd: number;
    try {
      fd = fs.openSync(lock, 'r+');
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') return; // unopenable for now (a network file system's hiccup)
      clearInterval(heartbeat);
      onLost?.('removed');
      return;
    }
    try {
      const held = fs.readFileSync(fd, 'utf8');
      const holder = parseHolder(held);
      if (!holder || !sameHolder(holder, me)) {
        // Taken over while this process was not running: touching it would keep the new holder's lock fresh for
        // it, and this process must stop writing the folder.
        clearInterval(heartbeat);
        onLost?.(holder ? `held now by process ${holder.pid} on host ${holder.hostname}` : 'removed');
        return;
      }
      // The same bytes written again: the file system stamps the write with its own clock, the one every claimant
      // measures the lock's age on (utimes with this host's time would make a lock look stale, or fresh, by as
      // much as this host's clock is off).
      fs.writeSync(fd, held, 0, 'utf8');
    } catch {
      // unreadable or unwritable for now: looked at again next time (the release finds a lasting failure)
    } finally {
      try {
        fs.closeSync(fd);
      } catch {
        // a network file system reports a failed write at close (the lock removed meanwhile): the next beat looks
      }
    }
  }, timing.heartbeatSeconds * 1000);
  heartbeat.unref();
  return () => {
    clearInterval(heartbeat);
    releaseLock(lock, key, me);
  };
}

/** Whether a lock's holder is `me`: the same process of the same host, boot and pid namespace. */
const sameHolder = (holder: Holder, me: Holder) =>
  holder.pid === me.pid &&
  holder.hostname === me.hostname &&
  holder.started === me.started &&
  holder.processes === me.processes;

/** Releases the lock if this process holds it (a lock already gone, or another's, is left as it is). */
function releaseLock(lock: string, key: string, me: Holder): void {
  heldHere.delete(key);
  let holder: Holder | undefined;
  try {
    const held = readLock(lock);
    holder = held === undefined ? undefined : parseHolder(held);
  } catch {
    return; // unreadable: not ours to remove
  }
  if (holder && sameHolder(holder, me)) {
    fs.rmSync(lock, { force: true });
  }
}
