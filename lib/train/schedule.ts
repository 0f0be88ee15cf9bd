import { z } from 'zod';

import { nativeAddon } from '../native';
import { parseOptions } from '../options';

/** The cosine's shape, with the PACE reference's values as defaults (the only place they are written in TS). */
export const CosineShapeSchema = z
  .object({
    warmupEpochs: z.number().int().min(0).default(10),
    minLr: z.number().min(0).default(1e-5),
    warmupLr: z.number().min(0).default(1e-6),
  })
  .strict();

const CosineScheduleSchema = CosineShapeSchema.extend({
  /** Peak (base) learning rate. */
  lr: z.number().positive(),
  /** Length of the cosine (timm's t_initial), in epochs. */
  epochs: z.number().int().min(1),
}).strict();

/** Options of {@link cosineSchedule}; defaults are the PACE reference's. */
export type CosineScheduleOptions = z.input<typeof CosineScheduleSchema>;

/** A learning-rate schedule queried by epoch (as the reference steps it) or by step. */
export interface LrSchedule {
  readonly options: z.output<typeof CosineScheduleSchema>;
  /**
   * The learning rate used during epoch `epoch` (0-based) when the schedule is stepped once per epoch as the
   * reference loop does: `scheduler.step(e)` after training epoch e, so epoch e runs at f(e − 1) and epoch 0 at
   * the warm-up start (epochs 0 and 1 both run at `warmupLr`; without a warm-up, epoch 0 runs at `lr`).
   */
  lrForEpoch(epoch: number): number;
  /**
   * Per-step stepping: f at t = step / stepsPerEpoch epochs, computed in updates as timm with t_in_epochs = false
   * computes it (warm-up and length in updates), to the bit.
   */
  lrForStep(step: number, stepsPerEpoch: number): number;
  /** timm's CosineLRScheduler value f(t) for t in epochs (cycle_limit 1, k_decay 1, no warm-up prefix). */
  valueAt(t: number): number;
}

/** timm's `CosineLRScheduler(t_initial=epochs, warmup_t, lr_min, warmup_lr_init)`, with its exact arithmetic. */
export function cosineSchedule(options: CosineScheduleOptions): LrSchedule {
  const resolved = parseOptions(CosineScheduleSchema, options, 'schedule');
  nativeAddon().cosineLr(resolved, { epoch: 0 }); // the core's rules of a schedule's shape, checked at once
  // Native (train/schedule.h), which the epoch loop uses too: timm's value uses the C library's cos, which
  // differs from V8's Math.cos in the last bit.
  return {
    options: resolved,
    valueAt: (t) => nativeAddon().cosineLr(resolved, { t: parseOptions(EpochTimeSchema, t, 't') }),
    lrForEpoch: (epoch) => nativeAddon().cosineLr(resolved, { epoch: parseOptions(CountSchema(0), epoch, 'epoch') }),
    lrForStep: (step, stepsPerEpoch) =>
      nativeAddon().cosineLr(resolved, {
        step: parseOptions(CountSchema(0), step, 'step'),
        stepsPerEpoch: parseOptions(CountSchema(1), stepsPerEpoch, 'stepsPerEpoch'),
      }),
  };
}

// Where a schedule is asked: whole epochs and steps (the native side counts them as 64-bit integers), a time t >= 0.
const CountSchema = (min: number) => z.number().int().min(min).max(Number.MAX_SAFE_INTEGER);
const EpochTimeSchema = z.number().min(0).max(Number.MAX_SAFE_INTEGER);
