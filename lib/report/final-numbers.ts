import type { EpochRow, MetricKey, RunRecord } from './read-runs';

/** A value and the epoch it was measured in. */
export interface Measured {
  epoch: number;
  value: number;
}

/** The last epoch in which `key` was measured, with its value. */
export function lastMeasured(epochs: EpochRow[], key: MetricKey): Measured | undefined {
  for (let i = epochs.length - 1; i >= 0; i--) {
    const value = epochs[i][key];
    if (value !== undefined) return { epoch: epochs[i].epoch, value };
  }
  return undefined;
}

/** The highest value `key` reached (the first epoch that reached it). */
export function bestMeasured(epochs: EpochRow[], key: MetricKey): Measured | undefined {
  let best: Measured | undefined;
  for (const row of epochs) {
    const value = row[key];
    if (value !== undefined && (best === undefined || value > best.value)) best = { epoch: row.epoch, value };
  }
  return best;
}

/** A run's final numbers, as the report's table shows them. */
export interface FinalNumbers {
  /** Completed epochs. */
  epochs: number;
  /** Each metric's last measured value. */
  last: Partial<Record<MetricKey, Measured>>;
  /** The best validation accuracy and its epoch. */
  bestValAcc?: Measured;
  /** Mean throughput over the epochs. */
  meanImagesPerSecond?: number;
  /** Training time, summed over the epochs (evaluation not included). */
  totalSeconds?: number;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * The value `key` ended a run with. A metric that was not finite after its last finite value (a diverged loss)
 * ends as NaN at that epoch: the last finite value would pass for the run's end.
 */
export function finalMeasured(epochs: EpochRow[], key: MetricKey): Measured | undefined {
  const measured = lastMeasured(epochs, key);
  const notFinite = [...epochs].reverse().find((row) => row.notFinite?.includes(key));
  if (notFinite && (!measured || notFinite.epoch > measured.epoch)) return { epoch: notFinite.epoch, value: NaN };
  return measured;
}

/** A run's final numbers (each metric's as {@link finalMeasured} says). */
export function finalNumbers(run: RunRecord, keys: readonly MetricKey[]): FinalNumbers {
  const last: Partial<Record<MetricKey, Measured>> = {};
  for (const key of keys) {
    const measured = finalMeasured(run.epochs, key);
    if (measured) last[key] = measured;
  }
  const throughput = run.epochs.flatMap((row) => (row.imagesPerSecond === undefined ? [] : [row.imagesPerSecond]));
  const seconds = run.epochs.flatMap((row) => (row.seconds === undefined ? [] : [row.seconds]));
  return {
    epochs: run.epochs.length,
    last,
    bestValAcc: bestMeasured(run.epochs, 'val_acc'),
    meanImagesPerSecond: throughput.length ? sum(throughput) / throughput.length : undefined,
    totalSeconds: seconds.length ? sum(seconds) : undefined,
  };
}
