import fs from 'node:fs';
import path from 'node:path';

import { DOMAIN_SHIFT_FILE } from '../cli/domain-shift-eval';
import { PaceFileError, PaceStateError } from '../errors';
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

/**
 * A run's final numbers: the last measured validation and test accuracy, the epochs it completed, and the top-1 of
 * each domain-adaptation set its fit evaluated.
 */
export interface FinalMetrics {
  epochs: number;
  val_acc?: number;
  test_acc?: number;
  domainShift?: Record<string, number>;
}

/** The per-set top-1 of a run folder's domain-shift.json, which a completed `pace fit` writes. */
function domainShiftOf(dir: string): Record<string, number> | undefined {
  const file = path.join(dir, DOMAIN_SHIFT_FILE);
  if (!fs.existsSync(file)) return undefined;
  try {
    const report = JSON.parse(fs.readFileSync(file, 'utf8')) as { sets: { name: string; result: { top1: number } }[] };
    return Object.fromEntries(report.sets.map((set) => [set.name, set.result.top1]));
  } catch (error) {
    throw new PaceFileError(`${file}: not a domain-adaptation report (${(error as Error).message})`);
  }
}

/** The final numbers in a run folder's metrics (none yet: zero epochs). */
export function finalMetrics(dir: string): FinalMetrics {
  if (!fs.existsSync(path.join(dir, 'metrics.jsonl'))) return { epochs: 0 };
  const { epochs } = readRun(dir);
  const domainShift = domainShiftOf(dir);
  return {
    epochs: epochs.length,
    val_acc: lastMeasured(epochs, 'val_acc')?.value,
    test_acc: lastMeasured(epochs, 'test_acc')?.value,
    ...(domainShift && { domainShift }),
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
 * it), the epochs the newest readable one has behind it, and which one that is (`previous` when `last` is
 * unreadable: the resume starts there).
 */
export async function checkpointOf(
  dir: string,
): Promise<{ exists: boolean; epochs?: number; from?: 'last' | 'previous' }> {
  const present = (['last', 'previous'] as const).filter((from) =>
    fs.existsSync(path.join(dir, `${from}.safetensors`)),
  );
  for (const from of present) {
    try {
      const epoch = Number((await readTensorHeader(path.join(dir, `${from}.safetensors`))).metadata?.epoch);
      if (Number.isInteger(epoch)) return { exists: true, epochs: epoch + 1, from };
    } catch {
      // unreadable: the next one, as fit's resume would say
    }
  }
  return { exists: present.length > 0 };
}
