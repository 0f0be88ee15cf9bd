import type { StepGraphCounts } from '../native';

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
  /** Saves the trainable state as the best one so far. */
  markBest(): Promise<void>;
  /** Restores the state saved by markBest (if any). */
  restoreBest(): Promise<boolean>;
}

/** Training callbacks, with tfjs's names. Each may be async; fit awaits it. */
export interface Callback {
  onTrainBegin?(control: FitControl): void | Promise<void>;
  onTrainEnd?(history: EpochLogs[], control: FitControl): void | Promise<void>;
  onEpochBegin?(epoch: number, control: FitControl): void | Promise<void>;
  onEpochEnd?(epoch: number, logs: EpochLogs, control: FitControl): void | Promise<void>;
  /** Called (throttled to at most once per step, never blocking training) with the step's loss. */
  onBatchEnd?(batch: number, logs: { loss: number; steps: number }): void;
}

/** Options of {@link earlyStopping}. */
export interface EarlyStoppingOptions {
  /** The logged value to watch (default `val_acc`, or `loss` when no validation set is given). */
  monitor?: keyof EpochLogs;
  /** Evaluations without improvement before stopping (default 10). */
  patience?: number;
  /** The smallest change that counts as an improvement (default 0). */
  minDelta?: number;
  /** `max` for accuracies, `min` for losses; `auto` picks by the name (default). */
  mode?: 'auto' | 'min' | 'max';
  /** Restore the best epoch's weights at the end (default true). */
  restoreBest?: boolean;
}

/**
 * Stops a fit when the monitored value has not improved for `patience` epochs in which it was measured,
 * and by default restores the trainable weights of the best epoch.
 */
export function earlyStopping(options: EarlyStoppingOptions = {}): Callback {
  const patience = options.patience ?? 10;
  const minDelta = Math.abs(options.minDelta ?? 0);
  const restoreBest = options.restoreBest ?? true;
  let monitor = options.monitor;
  let best = Number.NaN;
  let waited = 0;
  const better = (value: number, mode: 'min' | 'max') =>
    Number.isNaN(best) || (mode === 'max' ? value > best + minDelta : value < best - minDelta);
  return {
    onEpochEnd: async (_epoch, logs, control) => {
      monitor ??= logs.val_acc !== undefined ? 'val_acc' : 'loss';
      const value = logs[monitor];
      if (typeof value !== 'number') return; // not measured this epoch
      const mode = options.mode && options.mode !== 'auto' ? options.mode : /acc|top/.test(monitor) ? 'max' : 'min';
      if (better(value, mode)) {
        best = value;
        waited = 0;
        if (restoreBest) await control.markBest();
      } else if (++waited >= patience) {
        control.stop('early-stopping');
      }
    },
    onTrainEnd: async (_history, control) => {
      if (restoreBest) await control.restoreBest();
    },
  };
}
