import { z } from 'zod';

import { PaceOptionError } from '../errors';
import type { StepGraphCounts } from '../native';
import { parseOptions } from '../options';

/** What fit reports after each epoch (timm's names where it has them). */
export interface EpochLogs {
  epoch: number;
  /** Mean total loss (cross-entropy + λ·consistency) over the epoch's steps. */
  loss: number;
  clsLoss: number;
  paceLoss: number;
  /** Training top-1 accuracy (of the logits the cross-entropy saw). */
  acc: number;
  /** Learning rate of the epoch (its first step's, with per-step stepping). */
  lr: number;
  imagesPerSecond: number;
  seconds: number;
  /** Data-parallel: seconds of the epoch spent in the gradient all-reduces. */
  communicationSeconds?: number;
  /** How the epoch's steps ran with respect to whole-step CUDA graphs (absent with `stepGraphs: 'off'`). */
  stepGraphs?: StepGraphCounts;
  val_acc?: number;
  val_loss?: number;
  val_top5?: number;
  test_acc?: number;
  test_top5?: number;
  gradNorm?: number;
  fpDistance?: number;
}

/** Lets callbacks steer the fit. */
export interface FitControl {
  /** Stops after the current epoch. */
  stop(reason?: string): void;
  /** Saves the trainer's state as the best one so far (in the run folder, when the fit has one). */
  markBest(): Promise<void>;
  /** Restores the state saved by markBest (if any), also one an earlier fit of a resumed run saved. */
  restoreBest(): Promise<boolean>;
  /** Whether the fit has a validation set: `val_acc` is then logged every `evalEvery` epochs (and the last). */
  readonly validating: boolean;
  /** Whether the fit has a test set: `test_acc` is then logged as `val_acc` is. */
  readonly testing: boolean;
  /** Whether the fit logs `gradNorm` and `fpDistance` (its `diagnostics` option). */
  readonly diagnostics: boolean;
}

/** Training callbacks, with tfjs's names. Each may be async; fit awaits it. */
export interface Callback {
  /** `past`: the logs of the epochs a resumed fit's run has done already (empty for a new run). */
  onTrainBegin?(control: FitControl, past: EpochLogs[]): void | Promise<void>;
  onTrainEnd?(history: EpochLogs[], control: FitControl): void | Promise<void>;
  onEpochBegin?(epoch: number, control: FitControl): void | Promise<void>;
  onEpochEnd?(epoch: number, logs: EpochLogs, control: FitControl): void | Promise<void>;
  /**
   * Called once for every step, in order, with its loss, never blocking training: a step's call may come while
   * later steps run, and those still on their way when the epoch ends come before onEpochEnd. An async one is not
   * awaited between steps; the epoch waits for all of them before it ends, and one that throws or rejects stops
   * the fit, which rejects with its error. `lr`: the learning rate the step ran at (under
   * `scheduleStepping: 'step'`, each step's own).
   */
  onBatchEnd?(batch: number, logs: { loss: number; steps: number; lr: number }): void;
}

/** The per-epoch numbers a run folder may hold (EpochLogs' fields besides `epoch`). */
export const METRIC_KEYS = [
  'loss',
  'clsLoss',
  'paceLoss',
  'acc',
  'lr',
  'imagesPerSecond',
  'seconds',
  'val_acc',
  'val_loss',
  'val_top5',
  'test_acc',
  'test_top5',
  'gradNorm',
  'fpDistance',
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

/** Of those, the ones earlyStopping can watch: not the rate it runs at or how fast. */
const UNMONITORED = ['lr', 'imagesPerSecond', 'seconds'] as const;
export type MonitoredMetric = Exclude<MetricKey, (typeof UNMONITORED)[number]>;
export const MONITORED_METRICS = METRIC_KEYS.filter(
  (key): key is MonitoredMetric => !(UNMONITORED as readonly string[]).includes(key),
) as [MonitoredMetric, ...MonitoredMetric[]];

const EarlyStoppingOptionsSchema = z
  .object({
    monitor: z.enum(MONITORED_METRICS).optional(),
    patience: z.number().int().min(0).optional(),
    minDelta: z.number().optional(), // its size counts, as in Keras and tfjs
    mode: z.enum(['auto', 'min', 'max']).optional(),
    restoreBest: z.boolean().optional(),
  })
  .strict();

/** Options of {@link earlyStopping}. */
export interface EarlyStoppingOptions {
  /** The logged value to watch (default `val_acc`, or `loss` when no validation set is given). */
  monitor?: MonitoredMetric;
  /** Evaluations without improvement before stopping (default 10). */
  patience?: number;
  /** The smallest change that counts as an improvement (default 0). */
  minDelta?: number;
  /** `max` for accuracies, `min` for losses; `auto` picks by the name (default). */
  mode?: 'auto' | 'min' | 'max';
  /** Restore the best epoch's weights at the end of the fit, also of one aborted (default true). */
  restoreBest?: boolean;
}

/**
 * Stops a fit when the monitored value has not improved for `patience` epochs in which it was measured,
 * and by default restores the trainer's state of the best epoch. A resumed fit goes on where its run was: the
 * past epochs' logs are counted again (a run that stopped early stops again at once), and the best state is the
 * one the run kept.
 */
export function earlyStopping(given: EarlyStoppingOptions = {}): Callback {
  const options = parseOptions(EarlyStoppingOptionsSchema, given, 'earlyStopping options');
  const patience = options.patience ?? 10;
  const minDelta = Math.abs(options.minDelta ?? 0);
  const restoreBest = options.restoreBest ?? true;
  let monitor = options.monitor;
  let best = Number.NaN;
  let bestEpoch = -1;
  let waited = 0;
  /** Counts an epoch's logs: a new best, no improvement, or (with evalEvery > 1) not measured that epoch. */
  const observe = (logs: EpochLogs): 'best' | 'worse' | 'unmeasured' => {
    monitor ??= logs.val_acc !== undefined ? 'val_acc' : 'loss';
    const value = logs[monitor];
    if (typeof value !== 'number') return 'unmeasured';
    const mode = options.mode && options.mode !== 'auto' ? options.mode : /acc|top/.test(monitor) ? 'max' : 'min';
    if (Number.isNaN(best) || (mode === 'max' ? value > best + minDelta : value < best - minDelta)) {
      best = value;
      bestEpoch = logs.epoch;
      waited = 0;
      return 'best';
    }
    waited++;
    return 'worse';
  };
  return {
    onTrainBegin: async (control, past) => {
      // Chosen before any epoch: with evalEvery > 1 the first epochs log no val_acc though the fit validates.
      monitor = options.monitor ?? (control.validating ? 'val_acc' : 'loss');
      // A value the fit never logs would never stop it, nor restore anything.
      const missing = /^val_/.test(monitor)
        ? !control.validating && 'it has no validation set'
        : /^test_/.test(monitor)
          ? !control.testing && 'it has no test set'
          : (monitor === 'gradNorm' || monitor === 'fpDistance') && !control.diagnostics && 'diagnostics is off';
      if (missing)
        throw new PaceOptionError(`earlyStopping monitors ${monitor}, which this fit never logs: ${missing}`);
      best = Number.NaN;
      bestEpoch = -1;
      waited = 0;
      for (const logs of past) observe(logs);
      // Resumed from the end of its best epoch: the state is this one (a run killed before it was marked keeps none).
      if (restoreBest && past.length > 0 && bestEpoch === past[past.length - 1].epoch) await control.markBest();
      // A resumed run that had waited its patience out stops again at once (as onEpochEnd would have stopped it).
      if (waited > 0 && waited >= patience) control.stop('early-stopping');
    },
    onEpochEnd: async (_epoch, logs, control) => {
      const seen = observe(logs);
      if (seen === 'best') {
        if (restoreBest) await control.markBest();
      } else if (seen === 'worse' && waited >= patience) {
        control.stop('early-stopping');
      }
    },
    onTrainEnd: async (_history, control) => {
      if (restoreBest) await control.restoreBest();
    },
  };
}
