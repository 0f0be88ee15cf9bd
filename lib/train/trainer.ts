import path from 'node:path';

import { z } from 'zod';

import type { TensorDataset } from '../data/dataset';
import { distributedGroup, refuseDuringDataParallelEpoch } from '../distributed/group';
import { PaceBusyError, PaceStateError } from '../errors';
import type { Model } from '../models/model';
import {
  nativeAddon,
  type NativeOptimizerOptions,
  type NativePaceOptions,
  type NativeStepResult,
  type NativeTrainerHandle,
} from '../native';
import { parseOptions } from '../options';
import { handleOf, Tensor } from '../tensor';
import { evaluateDataset, type EvaluateOptions, type EvaluationReport } from '../eval/evaluate';
import { runFit, type FitOptions, type History } from './fit';
import { StepGraphModeSchema, type StepGraphMode } from './step-graphs';

// The defaults of the optimizer and PACE options are the core's (native/core/train/trainer.h, peft/pace.h):
// what is left out here is filled there, and Trainer.options reports the resolved values.
const OptimizerSchema = z
  .object({
    /** Default 1e-3; weight decay 1e-4, betas [0.9, 0.999], eps 1e-8 (torch's AdamW, the reference's values). */
    lr: z.number().min(0).optional(),
    weightDecay: z.number().min(0).optional(),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).optional(),
    eps: z.number().positive().optional(),
    /** Clip the gradients' total L2 norm to this before each update (0: off, the reference's choice). */
    clipGradNorm: z.number().min(0).optional(),
    /**
     * SAM (Foret et al.), one of the paper's comparisons: each update uses the gradient at θ + ρ·g/‖g‖ (the same
     * batch, noise and drop-path masks), costing a second forward and backward. 0: off.
     */
    samRho: z.number().min(0).optional(),
    /**
     * The gradient-norm penalty GP (Zhao et al.), another comparison: γ·‖∇L‖ joins the loss, its gradient taken by
     * the finite difference (1 − γ/r)·g(θ) + (γ/r)·g(θ + r·g/‖g‖) with r = `gradientPenaltyRadius` (default 0.01).
     * With `pace.variant: 'fpa'` this is the paper's FPA + GP. 0: off; not together with samRho.
     */
    gradientPenalty: z.number().min(0).optional(),
    gradientPenaltyRadius: z.number().positive().optional(),
  })
  .strict();

const PaceSchema = z
  .object({
    /** σ of the first noisy block; σ falls linearly to the head. 0 turns the noise off. */
    sigma: z.number().min(0).optional(),
    /** Weight of the consistency loss. */
    lambda: z.number().min(0).optional(),
    /** Blocks before this one get no noise (default: 1 for ViT, 0 for Swin, as the reference). */
    blockStart: z.number().int().min(0).optional(),
    /** Ablations (paper, Table 6): `additive` noise σ·ε, or `dropout` with rate σ, instead of z = 1 + σ·ε. */
    noise: z.enum(['multiplicative', 'additive', 'dropout']).optional(),
    /** `BC`: one value per sample (per window in Swin's attention) and channel, as the reference; `BTC`: per token. */
    noiseShape: z.enum(['BC', 'BTC']).optional(),
    /** Ablations: the same σ everywhere, or σ rising with depth. */
    sigmaSchedule: z.enum(['decreasing', 'shared', 'increasing']).optional(),
    /**
     * `pace`: both copies of the batch every step. `lazy`: both copies of half the batch every `lazyInterval`
     * steps, one noisy forward otherwise (the reference's lazy-half). `fast`: one noisy forward, consistency
     * with the logits from the sample's previous visit (needs `datasetSize` and per-sample `indices`).
     * `fpa`: the paper's ablation aligning with the frozen backbone's logits. `noise`: the paper's "Noise"
     * ablation, one noisy forward and no consistency term (`lambda` must be 0).
     */
    variant: z.enum(['pace', 'lazy', 'fast', 'fpa', 'noise']).optional(),
    /** `lazy`: the steps between PACE steps (default 1, the reference's `train.py`: half-batch PACE every step). */
    lazyInterval: z.number().int().min(1).optional(),
    /** μ of the paper's ℓ1-sparsity comparison: μ·Σ|θ| over the adapter parameters joins the loss (default 0). */
    adapterL1: z.number().min(0).optional(),
    /**
     * Where an adapted linear takes the noise: `adapter`, its adapter's output Δh (PACE); `h`, its whole output
     * h = W₀x + Δh (the paper's PACE_h ablation).
     */
    noiseOn: z.enum(['adapter', 'h']).optional(),
    /**
     * `pace`/`lazy`: the number of noisy copies of the batch (the paper's M networks, Fig. 5; default 2). The
     * consistency term is the mean over pairs of copies; the cross-entropy sees the first copy.
     */
    copies: z.number().int().min(2).max(16).optional(),
    /** The number of training samples (the `fast` variant keeps one logit vector per sample). */
    datasetSize: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((pace) => pace.variant !== 'fast' || pace.datasetSize !== undefined, {
    message: 'the fast variant needs datasetSize',
    path: ['datasetSize'],
  });

export const TrainerOptionsSchema = z
  .object({
    /** AdamW as torch's: decoupled weight decay, bias-corrected moments. */
    optimizer: OptimizerSchema.default({}),
    /** PACE; absent or σ = λ = 0 is plain fine-tuning with one forward. */
    pace: PaceSchema.default({}),
    /** Seeds the noise and stochastic-depth draws: the same seed reproduces a step exactly. */
    seed: z.number().int().min(0).default(0),
    /**
     * Arithmetic of the training steps. `'fp32'`: IEEE float32 (TF32 off, for the patch embedding's convolution
     * too, which PyTorch's defaults, and so the reference, run in TF32 on a GPU). `'tf32'`:
     * float32 storage with the matrix units' TF32 products (CUDA). `'bf16'`: autocast to bfloat16 with the frozen
     * backbone held once in bf16 and float32 master copies of the trainable parameters (CUDA; on the CPU too,
     * through oneDNN on CPUs with bf16 units, about 2.4× float32 on ViT-S there, and refused on CPUs whose bf16
     * products would sum in bf16: `pace doctor`'s `cpuBf16`). TF32 is one switch for the process: a step, forward
     * or evaluation wanting it set otherwise than those running on other models waits for them to end.
     */
    precision: z.enum(['fp32', 'tf32', 'bf16']).default('fp32'),
  })
  .strict();

const ProfileStepsSchema = z
  .object({
    trace: z.string().min(1),
    steps: z.number().int().min(1).default(5),
    stepGraphs: StepGraphModeSchema.default('off'),
  })
  .strict();

const TrainStepOptionsSchema = z
  .object({
    noise: z.record(z.string(), z.instanceof(Tensor)).optional(),
    indices: z.instanceof(Tensor).optional(),
    diagnostics: z.boolean().default(false),
    stepGraphs: StepGraphModeSchema.optional(),
  })
  .strict();

/** Options of {@link Trainer}. */
export type TrainerOptions = z.input<typeof TrainerOptionsSchema>;

/** A trainer's options with every default filled in (the core's defaults for the optimizer and PACE). */
export interface ResolvedTrainerOptions {
  /** AdamW's betas as one pair, as torch writes them; the rest as the core reports it. */
  optimizer: Omit<NativeOptimizerOptions, 'beta1' | 'beta2'> & { betas: [number, number] };
  pace: NativePaceOptions;
  seed: number;
  precision: 'fp32' | 'tf32' | 'bf16';
  /** Data-parallel: this trainer's rank and the number of ranks (0 and 1 in a single process). */
  rank: number;
  worldSize: number;
}

/** What one training step computed (losses of the step's forward, before the update). */
export type StepResult = NativeStepResult;

/** Options of {@link Trainer.trainStep}. */
export interface TrainStepOptions {
  /** ε per linear to replay instead of drawing (shapes as the reference's `noise.*`, or from lastNoise()). */
  noise?: Record<string, Tensor>;
  /** int64 `[B]`: each sample's index in the training set (the `fast` variant). */
  indices?: Tensor;
  /** Also compute the gradient norm and the FP-distance (costs two extra eval forwards). */
  diagnostics?: boolean;
  /**
   * Whole-step CUDA graphs for a loop of your own (as fit's `stepGraphs`; default `off` here): with `auto`, steps of
   * the same shapes warm up three times, are captured once and replayed from then on; the result's `graph` says
   * how each ran. Keep the batch shape fixed: every new shape holds its own graph and buffers.
   */
  stepGraphs?: StepGraphMode;
}

/**
 * Trains a model's trainable parameters (see {@link Model.addAdapters}) with AdamW and, when configured,
 * PACE: both copies of the batch in one forward with independent adapter noise, cross-entropy on the first
 * copy plus λ·mean_batch Σ_classes (f₁ − f₂)².
 *
 * Created after {@link initDistributed}, a trainer is data-parallel: rank 0's trainable tensors are broadcast to
 * every rank, each step averages the gradients (and the losses and gradient norm it reports) over the ranks before
 * the update, and each rank draws its own noise; a step's `correct`, `counted` and `fpDistance` are this rank's
 * share's (a fit sums them over the ranks). Its fit splits every global batch across the ranks.
 */
export class Trainer implements Disposable {
  readonly model: Model;
  /** The options in force, every default filled in. */
  readonly options: ResolvedTrainerOptions;
  #handle: NativeTrainerHandle;
  #busy = false;
  /** Whether the running fit has a schedule, which sets the rate of every epoch (or step) itself. */
  #scheduledFit = false;
  #disposed = false;
  /** The rate the next unscheduled step runs at (a scheduled epoch sets its own). */
  #learningRate: number;

  constructor(model: Model, options: TrainerOptions = {}) {
    const { optimizer, pace, seed, precision } = parseOptions(TrainerOptionsSchema, options, 'options');
    if (distributedGroup()) refuseDuringDataParallelEpoch('a data-parallel Trainer (its broadcast)');
    this.model = model;
    const { betas, ...rest } = optimizer;
    this.#handle = new (nativeAddon().NativeTrainer)(
      model.nativeHandle,
      { ...rest, beta1: betas?.[0], beta2: betas?.[1] },
      pace,
      seed,
      precision,
    );
    const resolved = this.#handle.options();
    const { beta1, beta2, ...resolvedOptimizer } = resolved.optimizer;
    this.options = {
      optimizer: { ...resolvedOptimizer, betas: [beta1, beta2] },
      pace: resolved.pace,
      seed,
      precision,
      rank: resolved.rank,
      worldSize: resolved.worldSize,
    };
    this.#learningRate = this.options.optimizer.lr;
  }

  /**
   * Forward, backward and one AdamW step on a batch: images float `[B, 3, S, S]`, targets int64 `[B]` or soft
   * targets float `[B, classes]` (as mixup makes them; accuracy then counts their largest entry).
   * `noise` replays given ε draws per linear (shapes as the reference's `noise.*`) instead of drawing them.
   */
  async trainStep(images: Tensor, targets: Tensor, options: TrainStepOptions = {}): Promise<StepResult> {
    this.model.fitLock.check('trainer.trainStep');
    if (this.options.worldSize > 1) refuseDuringDataParallelEpoch('a data-parallel trainStep');
    const { noise, indices, diagnostics, stepGraphs } = parseOptions(TrainStepOptionsSchema, options, 'options');
    return this.#handle.step(handleOf(images), handleOf(targets), {
      noise: noise && Object.fromEntries(Object.entries(noise).map(([name, value]) => [name, handleOf(value)])),
      indices: indices && handleOf(indices),
      diagnostics,
      stepGraphs,
    });
  }

  /**
   * Runs `steps` training steps on one batch (real steps: the parameters change) under libtorch's profiler, as
   * torch.profiler records them: the operators and, on a GPU, every kernel, copy and launch. The Chrome trace goes
   * to `trace` (open it in Perfetto or chrome://tracing; `bench/profile-summary.ts` sums it by kind of kernel).
   * Needs a libtorch built with Kineto (PyTorch's is; Debian's is not, and is refused with a clear error).
   */
  async profileSteps(
    images: Tensor,
    targets: Tensor,
    options: { trace: string; steps?: number; stepGraphs?: StepGraphMode },
  ): Promise<StepResult[]> {
    this.model.fitLock.check('trainer.profileSteps');
    const { trace, steps, stepGraphs } = parseOptions(ProfileStepsSchema, options, 'options');
    return this.#handle.profileSteps(handleOf(images), handleOf(targets), {
      steps,
      trace: path.resolve(trace),
      stepGraphs,
    });
  }

  /** σ of every linear under the configured schedule (0 where there is no noise). */
  sigmaPerLinear(): Record<string, number> {
    return { ...this.#handle.sigmaPerLinear() };
  }

  /**
   * The noise draws (ε per linear; the mask for dropout noise) of the last step, copies: pass them back as `noise` to
   * replay it.
   */
  lastNoise(): Record<string, Tensor> {
    return Object.fromEntries(
      Object.entries(this.#handle.lastNoise()).map(([name, handle]) => [name, new Tensor(handle)]),
    );
  }

  /** The number of training steps taken so far (readable while a fit runs). */
  get iteration(): number {
    return this.#handle.iteration;
  }

  /**
   * Sets the learning rate of the next steps; from a fit's callbacks only when the fit has `schedule: false` (a
   * schedule would replace the rate at the next epoch or step).
   */
  setLearningRate(lr: number): void {
    this.model.fitLock.check('trainer.setLearningRate');
    if (this.#scheduledFit) {
      throw new PaceStateError(
        "trainer.setLearningRate: this fit's schedule sets the rate of every epoch and would replace this one; " +
          'fit with schedule: false to set rates from a callback',
      );
    }
    this.#setLearningRate(parseOptions(z.number().min(0), lr, 'lr'));
  }

  #setLearningRate(lr: number): void {
    this.#handle.setLearningRate(lr);
    this.#learningRate = lr;
  }

  /**
   * Trains for `epochs` over shuffled batches (the last partial batch dropped, as the reference), with timm's
   * cosine schedule, evaluation every `evalEvery` epochs, callbacks, an optional run folder with checkpoints,
   * `resume` from one, and an AbortSignal that stops at the next step. Batches run natively.
   */
  async fit(train: TensorDataset, options: FitOptions): Promise<History> {
    if (this.#busy) throw new PaceBusyError('this trainer is already running a fit; wait for it to finish');
    this.#handle.check(); // disposed, or its model disposed or re-adapted: refused before the run folder is made
    this.#busy = true;
    this.#scheduledFit = (options as Partial<FitOptions> | undefined)?.schedule !== false;
    try {
      // The lock is taken at this call, before any call made after it (hold's first part runs at once); the
      // fingerprint then is the one the calls queued before the fit leave.
      return await this.model.fitLock.hold(async () => {
        const weights = await this.model.queuedWeightsFingerprint();
        return runFit(
          {
            handle: this.#handle,
            seed: this.options.seed,
            lr: this.options.optimizer.lr,
            learningRate: () => this.#learningRate,
            setLearningRate: (lr) => this.#setLearningRate(lr),
            classes: this.model.spec.numClasses,
            imageSize: this.model.spec.imgSize,
            rank: this.options.rank,
            worldSize: this.options.worldSize,
            ...(this.options.pace.variant === 'fast' && { fastDatasetSize: this.options.pace.datasetSize }),
            evaluate: (dataset, batchSize, signal) => this.evaluate(dataset, { batchSize, signal }),
            describe: () => ({
              model: { name: this.model.name, spec: this.model.spec, adapters: this.model.adapters, weights },
              trainer: this.options,
            }),
          },
          train,
          options,
        );
      });
    } finally {
      this.#busy = false;
      this.#scheduledFit = false;
    }
  }

  /**
   * Top-1 (and top-5) accuracy, loss, per-class accuracy and the confusion matrix on a dataset, in eval mode.
   * A data-parallel trainer's evaluation is collective: every rank calls it, evaluates its share, and gets the
   * whole dataset's figures.
   */
  async evaluate(dataset: TensorDataset, options: EvaluateOptions = {}): Promise<EvaluationReport> {
    this.model.fitLock.check('trainer.evaluate');
    if (this.#disposed) throw new PaceStateError('Trainer was disposed; it cannot be used any more');
    if (this.options.worldSize > 1) refuseDuringDataParallelEpoch('a data-parallel evaluation');
    return evaluateDataset(this.model, dataset, options, this.options.worldSize > 1);
  }

  /**
   * Frees what the trainer holds beside the model (AdamW's moments, its generators); the model stays usable. A
   * fit still running is refused; a step in flight finishes first.
   */
  dispose(): void {
    if (this.#busy) throw new PaceBusyError('this trainer is running a fit; abort it and await it first');
    this.#disposed = true;
    this.#handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
