import fs from 'node:fs';
import path from 'node:path';

import { DOMAIN_SHIFT_FILE, SWEEP_FAILED_FILE, SWEEP_FINISHED_FILE } from '../train/run-folder';
import { DOMAIN_SHIFT_RESIZES } from '../data/domain-shift';
import type { DomainShiftScoring } from '../eval/domain-shift-table';
import { PaceFileError, PaceStateError } from '../errors';
import { finalMeasured } from '../report/final-numbers';
import { readRun } from '../report/read-runs';
import { readTensorHeader } from '../safetensors';
import { writeFileAtomic } from '../files';

export { runStatus, type RunStatus } from './run-status';

/**
 * A run's final numbers: the last measured validation and test accuracy, the epochs it completed, and the top-1 of
 * each domain-adaptation set its fit evaluated, with how each was scored.
 */
export interface FinalMetrics {
  epochs: number;
  val_acc?: number;
  test_acc?: number;
  domainShift?: Record<string, number>;
  domainShiftScoring?: Record<string, DomainShiftScoring>;
}

/** The per-set top-1 and scoring of a run folder's domain-shift.json, which a completed `pace fit` writes. */
function domainShiftOf(dir: string): Pick<FinalMetrics, 'domainShift' | 'domainShiftScoring'> {
  const file = path.join(dir, DOMAIN_SHIFT_FILE);
  if (!fs.existsSync(file)) return {};
  try {
    const report = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      sets: { name: string; result: { top1: number } & DomainShiftScoring }[];
    };
    return {
      domainShift: Object.fromEntries(report.sets.map((set) => [set.name, set.result.top1])),
      domainShiftScoring: Object.fromEntries(
        report.sets.flatMap(({ name, result: { classes, resize } }) =>
          typeof classes === 'number' ? [[name, { classes, ...(resize && { resize }) }]] : [],
        ),
      ),
    };
  } catch (error) {
    throw new PaceFileError(`${file}: not a domain-adaptation report (${(error as Error).message})`);
  }
}

/**
 * The final numbers in a run folder's metrics.jsonl and domain-shift.json (none yet: zero epochs). An accuracy that
 * was not finite at the end is not measured: its last finite value would stand for a run that ended otherwise.
 */
export function measuredMetrics(dir: string): FinalMetrics {
  if (!fs.existsSync(path.join(dir, 'metrics.jsonl'))) return { epochs: 0 };
  const { epochs } = readRun(dir);
  const final = (key: 'val_acc' | 'test_acc') => {
    const value = finalMeasured(epochs, key)?.value;
    return value !== undefined && Number.isFinite(value) ? value : undefined;
  };
  return {
    epochs: epochs.length,
    val_acc: final('val_acc'),
    test_acc: final('test_acc'),
    ...domainShiftOf(dir),
  };
}

/** A number as finished.json holds it: null (JSON's NaN) is not measured. */
function recordedNumber(value: unknown, file: string, key: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return value;
  throw new PaceFileError(`${file}: ${key} is ${JSON.stringify(value)}, not a number`);
}

/** The numbers a finished.json holds; undefined when it has none (an older sweep's names the run only). */
function recordedMetrics(record: Record<string, unknown>, file: string): FinalMetrics | undefined {
  const { epochs, val_acc, test_acc, domainShift, domainShiftScoring } = record;
  if (epochs === undefined) return undefined;
  if (typeof epochs !== 'number' || !Number.isInteger(epochs) || epochs < 0) {
    throw new PaceFileError(`${file}: epochs is ${JSON.stringify(epochs)}, not a count of epochs`);
  }
  if (domainShift !== undefined && (typeof domainShift !== 'object' || domainShift === null)) {
    throw new PaceFileError(`${file}: domainShift is ${JSON.stringify(domainShift)}, not each set's top-1`);
  }
  const sets =
    domainShift &&
    Object.entries(domainShift).flatMap(([name, top1]) => {
      const value = recordedNumber(top1, file, `domainShift.${name}`);
      return value === undefined ? [] : [[name, value] as const];
    });
  return {
    epochs,
    val_acc: recordedNumber(val_acc, file, 'val_acc'),
    test_acc: recordedNumber(test_acc, file, 'test_acc'),
    ...(sets && { domainShift: Object.fromEntries(sets) }),
    ...(domainShiftScoring !== undefined && { domainShiftScoring: recordedScoring(domainShiftScoring, file) }),
  };
}

/** How each set was scored, as finished.json holds it (an older sweep's has none). */
function recordedScoring(value: unknown, file: string): Record<string, DomainShiftScoring> {
  const valid = (scoring: unknown) => {
    const { classes, resize, ...rest } = (scoring ?? {}) as Record<string, unknown>;
    return (
      typeof scoring === 'object' &&
      Number.isInteger(classes) &&
      (classes as number) > 0 &&
      (resize === undefined || DOMAIN_SHIFT_RESIZES.includes(resize as never)) &&
      Object.keys(rest).length === 0
    );
  };
  if (typeof value !== 'object' || value === null || !Object.values(value).every(valid)) {
    throw new PaceFileError(
      `${file}: domainShiftScoring is ${JSON.stringify(value)}, not each set's {classes, resize}`,
    );
  }
  return value as Record<string, DomainShiftScoring>;
}

/**
 * A finished run's final numbers, from its finished.json (written once, atomically, when the run finished); a
 * finished.json of an older sweep, which names the run only, sends this to the run's metrics instead.
 */
export function finalMetrics(dir: string): FinalMetrics {
  const file = path.join(dir, SWEEP_FINISHED_FILE);
  let record: unknown;
  try {
    record = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new PaceFileError(`${file}: not readable JSON (${(error as Error).message})`, { cause: error });
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new PaceFileError(`${file}: not a JSON object`);
  }
  const recorded = recordedMetrics(record as Record<string, unknown>, file);
  if (!recorded) return measuredMetrics(dir);
  // A finished.json written before it kept the scoring: the run's domain-shift.json still says how it scored.
  if (recorded.domainShift && !recorded.domainShiftScoring) {
    const { domainShiftScoring } = domainShiftOf(dir);
    if (domainShiftScoring) recorded.domainShiftScoring = domainShiftScoring;
  }
  return recorded;
}

/** Marks a run finished, after checking that its metrics hold every epoch; returns its final numbers. */
export function markFinished(dir: string, name: string, epochs: number): FinalMetrics {
  const metrics = measuredMetrics(dir);
  if (metrics.epochs !== epochs) {
    throw new PaceStateError(`run ${name}: pace fit ended with ${metrics.epochs} of ${epochs} epochs in metrics.jsonl`);
  }
  fs.rmSync(path.join(dir, SWEEP_FAILED_FILE), { force: true });
  writeFileAtomic(path.join(dir, SWEEP_FINISHED_FILE), `${JSON.stringify({ run: name, ...metrics }, null, 2)}\n`);
  return metrics;
}

/** Records why a run failed (a later sweep of the folder tries it again). */
export function markFailed(dir: string, message: string): void {
  writeFileAtomic(path.join(dir, SWEEP_FAILED_FILE), `${JSON.stringify({ message }, null, 2)}\n`);
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
