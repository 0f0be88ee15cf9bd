import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { withContext } from '../error-context';
import { nativeAddon, type NativeTrainerHandle } from '../native';
import { readTensorHeader } from '../safetensors';

/** The state a callback marked best (earlyStopping's), kept in the run folder so that a resumed fit can restore it. */
export const MARKED_BEST_FILE = 'marked-best.safetensors';

/** FitControl's markBest and restoreBest for one fit. */
export interface BestMarks {
  /** Saves the trainer's state as the best one, as of the end of `epoch`. */
  mark(epoch: number): Promise<void>;
  /** Restores the state marked last, in this fit or in the earlier fits of its run: its epoch, or undefined when none was. */
  restore(): Promise<number | undefined>;
  /**
   * Removes a mark of the run's abandoned continuation (of this fit's start epoch or later), as the fit writes its
   * first checkpoint: a fit that ends before leaves the mark with the later epochs' checkpoints it belongs to.
   */
  forgetAbandoned(): void;
  /** Removes what the fit kept outside its run folder. */
  dispose(): void;
}

const unreadable = (file: string, error: unknown) =>
  withContext(
    error,
    `the run's best state marked by a callback, ${file}, is unreadable (${(error as Error).message}): remove it to resume without it`,
  );

/** The epoch a kept mark was made at, or undefined when there is none. */
export async function markedEpoch(file: string): Promise<number | undefined> {
  if (!fs.existsSync(file)) return undefined;
  try {
    const epoch = (await readTensorHeader(file)).metadata?.epoch;
    return epoch !== undefined && /^-?\d+$/.test(epoch) ? Number(epoch) : undefined;
  } catch (error) {
    throw unreadable(file, error);
  }
}

/**
 * Marks of a fit starting at `startEpoch`. With a run folder, its writer keeps them in the folder; an earlier
 * fit's mark there counts only if it is of an epoch before `startEpoch` (a resume from `previous` or `best` may
 * start before it), and is removed otherwise (by forgetAbandoned). Without a run folder, and on the other ranks
 * of a data-parallel fit, they go to a temporary folder of their own.
 */
export async function bestMarks(
  handle: NativeTrainerHandle,
  folder: string | undefined,
  writer: boolean,
  startEpoch: number,
): Promise<BestMarks> {
  const kept = folder === undefined ? undefined : path.join(folder, MARKED_BEST_FILE);
  const epoch = kept === undefined ? undefined : await markedEpoch(kept);
  // The mark restore() loads: its file and the epoch it was made at.
  let restorable = kept !== undefined && epoch !== undefined && epoch < startEpoch ? { file: kept, epoch } : undefined;
  // A damaged mark is refused now, as the fit resumes, not after its epochs have run.
  if (restorable !== undefined) {
    try {
      await nativeAddon().checkCheckpoint(restorable.file);
    } catch (error) {
      throw unreadable(restorable.file, error);
    }
  }
  // A mark of this epoch or later belongs to the run's abandoned continuation: a later resume must not find it.
  let abandoned = writer && kept !== undefined && epoch !== undefined && restorable === undefined;
  let temporary: string | undefined;
  const target = (): string => {
    if (writer && kept !== undefined) return kept;
    temporary ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pace-fit-'));
    return path.join(temporary, 'best.safetensors');
  };
  return {
    mark: async (epoch) => {
      const file = target();
      await handle.saveState(file, { epoch: String(epoch) });
      restorable = { file, epoch };
      if (file === kept) abandoned = false; // replaced
    },
    forgetAbandoned: () => {
      if (abandoned && kept !== undefined) fs.rmSync(kept, { force: true });
      abandoned = false;
    },
    restore: async () => {
      if (restorable === undefined) return undefined;
      await handle.loadState(restorable.file);
      return restorable.epoch;
    },
    dispose: () => {
      if (temporary !== undefined) fs.rmSync(temporary, { recursive: true, force: true });
    },
  };
}
