import fs from 'node:fs';
import path from 'node:path';

import { withContext } from '../error-context';
import { jsonDifferences } from '../json-differences';
import { PaceOptionError, PaceStateError } from '../errors';
import { takeLock, type LockTiming } from '../folder-lock';
import { writeFileAtomic } from '../files';
import type { SweepIdentity } from './config';

/** The file a sweep folder stores its config in (what decides its runs). */
export const SWEEP_CONFIG_FILE = 'sweep.json';
const LOCK = 'sweep.lock';

/** The first place two JSON values differ, as a path (`grid.trainer.pace.sigma[1]`), or undefined. */
export function firstDifference(a: unknown, b: unknown): string | undefined {
  const [first] = jsonDifferences(a, b);
  return first && (first.path || '(the whole config)');
}

/**
 * Opens a sweep folder for `identity`: creates it and stores the config (`sweep.json`), or checks that the stored
 * one is the same (a changed config would mix runs of two sweeps: refused); takes the folder's lock
 * (`sweep.lock`, see {@link takeLock}: another sweep holding it is refused). Returns the function releasing the lock.
 * `configFile`, the file the config was read from, is named when it is the folder's own `sweep.json`. `onLost`: the
 * lock was taken over by another host while this process was not running (see {@link takeLock}).
 */
export function openSweepFolder(
  dir: string,
  identity: SweepIdentity,
  configFile?: string,
  lock: { timing?: LockTiming; onLost?: (now: string) => void } = {},
): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK);
  const release = takeLock(dir, file, { folder: 'sweep folder', user: 'sweep' }, lock.timing, lock.onLost);
  try {
    const stored = path.join(dir, SWEEP_CONFIG_FILE);
    if (fs.existsSync(stored)) {
      let before: unknown;
      try {
        before = JSON.parse(fs.readFileSync(stored, 'utf8'));
      } catch (error) {
        throw withContext(error, `${stored} is not readable JSON (${(error as Error).message})`);
      }
      const where = firstDifference(before, identity);
      if (where !== undefined && configFile !== undefined && path.resolve(configFile) === path.resolve(stored)) {
        throw new PaceOptionError(
          `the sweep folder ${dir} is the config's own folder: a sweep folder keeps its config as ` +
            `${SWEEP_CONFIG_FILE}, which here is the config file itself; give the sweep another folder (--dir, or "dir")`,
        );
      }
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
