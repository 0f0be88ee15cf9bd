import fs from 'node:fs';
import path from 'node:path';

import { withContext } from '../error-context';
import { jsonDifferences } from '../json-differences';
import { PaceBusyError, PaceStateError } from '../errors';
import { writeFileAtomic } from '../train/run-folder';
import type { SweepIdentity } from './config';

const STORED = 'sweep.json';
const LOCK = 'sweep.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The first place two JSON values differ, as a path (`grid.trainer.pace.sigma[1]`), or undefined. */
export function firstDifference(a: unknown, b: unknown): string | undefined {
  const [first] = jsonDifferences(a, b);
  return first && (first.path || '(the whole config)');
}

/**
 * Takes the folder's lock: our pid written to a file of our own, then hard-linked to the lock's name, which
 * fails when the name exists, so of processes starting together exactly one gets it. A lock whose process is
 * gone is removed (if it still names that process) and taken.
 */
function takeLock(dir: string, lock: string): void {
  const mine = `${lock}.tmp-${process.pid}`;
  writeFileAtomic(mine, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.linkSync(mine, lock);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let held: string;
      try {
        held = fs.readFileSync(lock, 'utf8');
      } catch {
        continue; // released meanwhile
      }
      const pid = Number(held.trim());
      if (pid === process.pid) return;
      if (Number.isInteger(pid) && alive(pid)) {
        throw new PaceBusyError(`the sweep folder ${dir} is in use by process ${pid} (${lock})`);
      }
      if (fs.readFileSync(lock, 'utf8') === held) fs.rmSync(lock, { force: true });
    }
    throw new PaceBusyError(
      `the sweep folder ${dir}: could not take its lock ${lock} (other processes keep taking it)`,
    );
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/**
 * Opens a sweep folder for `identity`: creates it and stores the config (`sweep.json`), or checks that the stored
 * one is the same (a changed config would mix runs of two sweeps: refused); takes the folder's lock
 * (`sweep.lock`, a live other process holding it is refused). Returns the function releasing the lock.
 */
export function openSweepFolder(dir: string, identity: SweepIdentity): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, LOCK);
  takeLock(dir, lock);
  const release = () => {
    try {
      if (fs.readFileSync(lock, 'utf8').trim() === String(process.pid)) fs.rmSync(lock, { force: true });
    } catch {
      // already gone
    }
  };
  try {
    const stored = path.join(dir, STORED);
    if (fs.existsSync(stored)) {
      let before: unknown;
      try {
        before = JSON.parse(fs.readFileSync(stored, 'utf8'));
      } catch (error) {
        throw withContext(error, `${stored} is not readable JSON (${(error as Error).message})`);
      }
      const where = firstDifference(before, identity);
      if (where !== undefined) {
        throw new PaceStateError(
          `the sweep folder ${dir} holds a sweep of another config (it differs at ${where}): ` +
            `resuming it with this one would mix two sweeps; use a new folder, or the config stored in ${stored}`,
        );
      }
    } else {
      writeFileAtomic(stored, `${JSON.stringify(identity, null, 2)}\n`);
    }
  } catch (error) {
    release();
    throw error;
  }
  return release;
}
