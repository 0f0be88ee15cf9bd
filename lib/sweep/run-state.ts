import fs from 'node:fs';
import path from 'node:path';

import { PaceStateError } from '../errors';
import { lastMeasured } from '../report/final-numbers';
import { readRun } from '../report/read-runs';
import { readTensorHeader } from '../safetensors';
import { writeFileAtomic } from '../train/run-folder';

/**
 * What a run folder says about its run. A run is finished once the sweep has seen its `pace fit` complete every
 * epoch: it then writes `finished.json` beside the fit's files, and never starts the run again.
 */
const FINISHED = 'finished.json';
const FAILED = 'failed.json';

export type RunStatus = 'finished' | 'failed' | 'unfinished';

export function runStatus(dir: string): RunStatus {
  if (fs.existsSync(path.join(dir, FINISHED))) return 'finished';
  return fs.existsSync(path.join(dir, FAILED)) ? 'failed' : 'unfinished';
}

/** A run's final numbers: the last measured validation and test accuracy, and the epochs it completed. */
export interface FinalMetrics {
  epochs: number;
  val_acc?: number;
  test_acc?: number;
}

/** The final numbers in a run folder's metrics (none yet: zero epochs). */
export function finalMetrics(dir: string): FinalMetrics {
  if (!fs.existsSync(path.join(dir, 'metrics.jsonl'))) return { epochs: 0 };
  const { epochs } = readRun(dir);
  return {
    epochs: epochs.length,
    val_acc: lastMeasured(epochs, 'val_acc')?.value,
    test_acc: lastMeasured(epochs, 'test_acc')?.value,
  };
}

/** Marks a run finished, after checking that its metrics hold every epoch; returns its final numbers. */
export function markFinished(dir: string, name: string, epochs: number): FinalMetrics {
  const metrics = finalMetrics(dir);
  if (metrics.epochs !== epochs) {
    throw new PaceStateError(`run ${name}: pace fit ended with ${metrics.epochs} of ${epochs} epochs in metrics.jsonl`);
  }
  fs.rmSync(path.join(dir, FAILED), { force: true });
  writeFileAtomic(path.join(dir, FINISHED), `${JSON.stringify({ run: name, ...metrics }, null, 2)}\n`);
  return metrics;
}

/** Records why a run failed (a later sweep of the folder tries it again). */
export function markFailed(dir: string, message: string): void {
  writeFileAtomic(path.join(dir, FAILED), `${JSON.stringify({ message }, null, 2)}\n`);
}

/**
 * Where a killed run stands: whether its folder holds a training checkpoint (then `pace fit --resume` continues
 * it), and the epochs the newest readable one has behind it.
 */
export async function checkpointOf(dir: string): Promise<{ exists: boolean; epochs?: number }> {
  const files = ['last.safetensors', 'previous.safetensors'].map((name) => path.join(dir, name));
  const present = files.filter((file) => fs.existsSync(file));
  for (const file of present) {
    try {
      const epoch = Number((await readTensorHeader(file)).metadata?.epoch);
      if (Number.isInteger(epoch)) return { exists: true, epochs: epoch + 1 };
    } catch {
      // unreadable: the next one, as fit's resume would say
    }
  }
  return { exists: present.length > 0 };
}
