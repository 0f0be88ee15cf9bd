import path from 'node:path';

import { SingleBar } from 'cli-progress';
import { z } from 'zod';

import { AugmentationSchema, nativeAugmentation, type Augmentation } from '../data/augment';
import { enterDataParallelEpoch } from '../distributed/group';
import { checkEvaluationImages, TensorDataset } from '../data/dataset';
import { normalizationOf } from '../data/dataset-fingerprint';
import { checkLabelsBelow } from '../data/labels';
import type { EvaluationReport } from '../eval/evaluate';
import {
  PaceBusyError,
  PaceDistributedError,
  PaceDivergedError,
  PaceInputError,
  PaceOptionError,
  PaceStateError,
} from '../errors';
import { nativeAddon, type NativeTrainerHandle } from '../native';
import { describeValue, parseOptions } from '../options';
import { readTensorHeaderSync } from '../safetensors';
import { handleOf } from '../tensor';
import type { Callback, EpochLogs, FitControl } from './callbacks';
import { bestIsAbandoned, keepPrevious, removeCheckpoint, resumeFrom, ResumeFromSchema } from './checkpoints';
import { bestMarks, MARKED_BEST_FILE, markedEpoch } from './marked-best';
import {
  agreeOnFit,
  agreeOnMarkBest,
  agreeOnPhase,
  agreeOnPreparation,
  agreeOnRunFolder,
  agreeOnStartEpoch,
  type Failed,
} from './rank-agreement';
import { foreignEntriesIn, holdRunFolder, RunFolder, runFilesIn } from './run-folder';
import { RUN_IDENTITY_KEY, runIdentityOf, trainingSetIdentity } from './run-identity';
import { cosineSchedule, CosineShapeSchema, type LrSchedule } from './schedule';
import { StepGraphModeSchema } from './step-graphs';

export const FitOptionsSchema = z
  .object({
    epochs: z.number().int().min(1),
    batchSize: z.number().int().min(1),
    /** Evaluate on `validation` (and `test`) every this many epochs and after the last (default 10, as the reference). */
    evalEvery: z.number().int().min(1).default(10),
    /**
     * timm's cosine schedule over `epochs` from the optimizer's lr (reference defaults). `false`: every epoch runs
     * at `optimizer.lr` (set when the fit starts, whatever rate an earlier fit or `setLearningRate` left; a
     * callback may still change it, and each epoch logs the rate it ran at). A resumed fit starts at `optimizer.lr`
     * too: a callback that changed the rate sets it again in `onTrainBegin` from the `past` epochs' logs.
     */
    schedule: z.union([z.literal(false), CosineShapeSchema]).default(CosineShapeSchema.parse({})),
    /** `epoch`: stepped after each epoch as the reference loop does; `step`: updated before every step. */
    scheduleStepping: z.enum(['epoch', 'step']).default('epoch'),
    /** Gradient norm and FP-distance per epoch (costs two extra eval forwards a step). */
    diagnostics: z.boolean().default(false),
    /**
     * The run folder (config, metrics, checkpoints). The fit holds it for its whole length (`fit.lock`): another
     * fit of it, from this process or another, is refused while it runs.
     */
    runDir: z.string().min(1).optional(),
    /** A run folder to continue from its last checkpoint (or the one `resumeFrom` names); not with `runDir`. */
    resume: z.string().min(1).optional(),
    /** Which checkpoint of `resume` to continue from: `previous` or `best` when `last` is refused. */
    resumeFrom: ResumeFromSchema.default('last'),
    /** Seed of the per-epoch shuffles (default: the trainer's seed). */
    shuffleSeed: z.number().int().min(0).optional(),
    /** A progress bar on stderr: `auto` shows it only on a TTY. */
    progress: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    /** Images per evaluation forward, on each rank (default: the training batch's share of a rank). */
    evalBatchSize: z.number().int().min(1).optional(),
    /**
     * Training augmentation over the training set's own (its fields replace the dataset's; a `resizedCrop`
     * replaces the dataset's `crop` and a `crop` its `resizedCrop`; `mixup: false`, `randomErasing: false` or
     * `resizedCrop: false` turns the dataset's off): e.g. `{ randAugment: 'rand-m9-mstd0.5-inc1', mixup: true }`.
     */
    augment: AugmentationSchema.optional(),
    /**
     * Whole-step CUDA graphs. `auto`: each kind of step (its shapes; a lazy variant's two kinds) is captured
     * once after three eager warm-up steps and replayed from then on, where the build and device can (CUDA with
     * libtorch >= 2.4); steps a graph cannot hold (diagnostics, data-parallel, SAM or the gradient penalty, the
     * fast variant) and other devices run eagerly. `off`: never. `rehearse`: the graph path's static buffers
     * and bookkeeping with an eager stand-in for the capture, on any device (for tests; no speed-up). Each
     * epoch's logs say how its steps ran (`stepGraphs`).
     */
    stepGraphs: StepGraphModeSchema.default('auto'),
  })
  .strict();

/** Options of {@link Trainer.fit} besides the datasets, callbacks and signal. */
export type FitOptions = z.input<typeof FitOptionsSchema> & {
  validation?: TensorDataset;
  test?: TensorDataset;
  callbacks?: Callback[];
  signal?: AbortSignal;
};

/** What a fit did. */
export interface History {
  /** One entry per completed epoch (including those of the run it resumed). */
  epochs: EpochLogs[];
  stopReason: 'completed' | 'early-stopping' | 'aborted' | string;
  /**
   * An abort within an epoch: the steps of it that ran (the model holds them, unless a callback put back another
   * state at the end, as `earlyStopping`'s `restoreBest` does; the run folder's checkpoint, and so a resume, is at
   * the end of the epoch before). An abort during the epoch's evaluation: all its steps.
   */
  interrupted?: { epoch: number; steps: number; stepsPerEpoch: number };
  /**
   * The epoch whose end state a callback put back with `restoreBest` (`earlyStopping`'s) after the last steps:
   * the model holds that epoch's weights, not the last epoch's. Absent when nothing was restored, also when
   * `restoreBest` found no marked state (its run's mark was removed).
   */
  restored?: { epoch: number };
}

interface FitHost {
  handle: NativeTrainerHandle;
  seed: number;
  /** The optimizer's lr option. */
  lr: number;
  /** The learning rate the next step runs at when no schedule sets it, and setting it. */
  learningRate(): number;
  setLearningRate(lr: number): void;
  /** The model's classes and image size: every set's labels and evaluation images are checked against them. */
  classes: number;
  imageSize: number;
  /** The fast variant's `pace.datasetSize` (the samples it keeps logits for); absent for the other variants. */
  fastDatasetSize?: number;
  /** Data-parallel: this process's rank and the number of ranks (0 and 1 in a single process). */
  rank: number;
  worldSize: number;
  /** `signal` stops it before its next batch (rejecting with the signal's reason); not given when data-parallel. */
  evaluate(dataset: TensorDataset, batchSize: number, signal?: AbortSignal): Promise<EvaluationReport>;
  describe(): Record<string, unknown>;
}

/** The epoch loop of Trainer.fit: batches run natively, JavaScript sees one call per epoch. */
export async function runFit(host: FitHost, train: TensorDataset, options: FitOptions): Promise<History> {
  if (typeof options !== 'object' || options === null) {
    throw new PaceOptionError(
      `options: expected an object ({ epochs, batchSize, ... }), got ${describeValue(options)}`,
    );
  }
  const { validation, test, callbacks = [], signal, ...rest } = options;
  for (const [where, set] of [
    ['train', train],
    ['options.validation', validation],
    ['options.test', test],
  ] as const) {
    if ((set !== undefined || where === 'train') && !(set instanceof TensorDataset)) {
      throw new PaceOptionError(`${where}: expected a TensorDataset, got ${describeValue(set)}`);
    }
  }
  if (host.worldSize > 1) await agreeOnFit(host.describe(), rest, { train, validation, test });
  const o = parseOptions(FitOptionsSchema, rest, 'options');
  refuseIgnoredFitOptions(rest, 'options');
  if (o.resume !== undefined && o.runDir !== undefined) {
    throw new PaceOptionError(
      'options.resume continues the run in its own folder: it takes no options.runDir (give one of the two)',
    );
  }
  if (o.schedule !== false && host.lr === 0) {
    // The native cosine needs a peak rate above 0 (native/core/train/schedule.cpp).
    throw new PaceOptionError(
      'optimizer.lr is 0, which the cosine schedule does not take: give the trainer a positive optimizer.lr, ' +
        'or fit with schedule: false to train at lr 0',
    );
  }
  // Checked with the options, before anything is written: a fix must not meet a folder this attempt left.
  const bad = Array.isArray(callbacks) ? callbacks.findIndex((c) => typeof c !== 'object' || c === null) : -2;
  if (bad !== -1) {
    const where = bad === -2 ? 'options.callbacks' : `options.callbacks[${bad}]`;
    throw new PaceOptionError(`${where}: expected an array of callback objects ({ onEpochEnd, ... })`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new PaceOptionError('options.signal: expected an AbortSignal (from an AbortController)');
  }
  // Every set checked whole before the first step: a bad label met mid-epoch (or at the first evaluation, epochs
  // later) would stop the fit after it had changed the model, and without naming the set or the sample.
  const checkLabels = (set: TensorDataset, where: string) => {
    if (host.classes > 0) checkLabelsBelow(set.labels.toBigInt64Array(), host.classes, where); // headless: refused natively
  };
  checkLabels(train, 'the training set');
  if (host.fastDatasetSize !== undefined && train.length > host.fastDatasetSize) {
    // Its samples are told apart by their position in the training set.
    throw new PaceInputError(
      `the training set has ${train.length} samples, more than the fast variant's pace.datasetSize ` +
        `${host.fastDatasetSize}: give the trainer pace.datasetSize ${train.length}`,
    );
  }
  for (const [name, set] of [
    ['validation', validation],
    ['test', test],
  ] as const) {
    if (!set) continue;
    if (set.length === 0) throw new PaceInputError(`options.${name}: the dataset is empty`);
    checkLabels(set, `options.${name}`);
    checkEvaluationImages(set, host.imageSize, `options.${name}`);
  }
  const stepsPerEpoch = Math.floor(train.length / o.batchSize);
  if (stepsPerEpoch === 0) {
    throw new PaceInputError(`the training set has ${train.length} samples, fewer than one batch of ${o.batchSize}`);
  }
  const schedule: LrSchedule | undefined =
    o.schedule === false ? undefined : cosineSchedule({ lr: host.lr, epochs: o.epochs, ...o.schedule });
  train = withFitAugmentation(train, o.augment);
  const augment = train.augment;
  if (augment?.crop === undefined && augment?.resizedCrop === undefined) {
    // Taken as they are: of the model's size, or the first step would refuse them.
    if (train.extents) {
      throw new PaceOptionError(
        'the training images are of their own sizes (extents): give augment.crop or augment.resizedCrop, which ' +
          "make each batch's images one size",
      );
    }
    checkEvaluationImages(train, host.imageSize, 'the training set');
  }
  if (o.batchSize % host.worldSize !== 0) {
    throw new PaceOptionError(
      `options.batchSize ${o.batchSize} must be a multiple of the ${host.worldSize} processes training together`,
    );
  }

  // Data-parallel, rank 0 alone writes the run folder, and holds it for the whole fit; every rank reads a
  // checkpoint it resumes from, and takes part in each checkpoint (the state gathers every rank's generators).
  const writer = host.rank === 0;
  const dir = o.resume ?? o.runDir;
  const option = o.resume === undefined ? 'runDir' : 'resume';
  let folder: RunFolder | undefined;
  let release: (() => void) | undefined;
  let refused: unknown;
  const lockLost: LockLost = {};
  try {
    if (dir !== undefined) folder = new RunFolder(dir, { mustExist: option === 'resume', readOnly: !writer, option });
    if (folder && writer) {
      const held = folder.dir;
      release = holdRunFolder(held, (now) => {
        lockLost.error = new PaceBusyError(
          `the run folder ${held}: its lock was taken over (${now}) while this fit was not running (suspended, or ` +
            'stopped, for longer than a lock is kept); the fit stopped at its next step and wrote nothing more there',
        );
        lockLost.stop?.();
      });
    }
  } catch (error) {
    refused = error;
  }
  if (dir !== undefined && host.worldSize > 1) {
    try {
      await agreeOnRunFolder(refused !== undefined, host.rank, dir);
    } catch (error) {
      release?.();
      if (refused !== undefined) throw refused;
      throw error;
    }
  }
  if (refused !== undefined) throw refused;
  try {
    const holding = !!release;
    const parts = { validation, test, callbacks, signal, augment, schedule, stepsPerEpoch, folder, holding, lockLost };
    return await fitEpochs(host, train, o, parts);
  } finally {
    release?.();
  }
}

/** What a phase of a fit threw, kept apart from whether it threw at all (a callback may throw `undefined`). */
interface Failure {
  thrown: unknown;
}

/**
 * The run folder's lock, found taken over by another fit (see takeLock's onLost): `error` says so, and `stop` (set
 * while the epochs run) ends the fit at its next step, before anything more is written.
 */
interface LockLost {
  error?: Error;
  stop?: () => void;
}

/** What {@link fitEpochs} takes besides the parsed options. */
interface FitParts {
  validation?: TensorDataset;
  test?: TensorDataset;
  callbacks: Callback[];
  signal?: AbortSignal;
  augment?: Augmentation;
  schedule?: LrSchedule;
  stepsPerEpoch: number;
  /** The run folder (read-only on the ranks but the first). */
  folder?: RunFolder;
  /** Whether this process holds the run folder's lock (and so tidies what killed writers left). */
  holding: boolean;
  lockLost: LockLost;
}

/** The fit itself, once its options are checked and its run folder (when it has one) is held. */
async function fitEpochs(
  host: FitHost,
  train: TensorDataset,
  o: z.output<typeof FitOptionsSchema>,
  { validation, test, callbacks, signal, augment, schedule, stepsPerEpoch, folder, holding, lockLost }: FitParts,
): Promise<History> {
  const shuffleSeed = o.shuffleSeed ?? host.seed;
  const writer = host.rank === 0;
  const checkpoints = folder !== undefined;
  const config = {
    ...host.describe(),
    fit: o,
    data: { trainSamples: train.length, ...trainingSetIdentity(train), ...(augment && { augment }) },
    ...(host.worldSize > 1 && { worldSize: host.worldSize }),
  };
  const identity = runIdentityOf(config);
  const run = writer ? folder : undefined;
  let history: EpochLogs[] = [];
  let startEpoch = 0;
  let resumed = false;
  // What the next checkpoint write keeps as `previous`: the checkpoint resumed from, then (undefined) the last.
  let continuesFrom: string | undefined;
  // Each rank's own preparation; data-parallel, its failure on one rank ends every rank's fit before the first
  // collective that follows, rather than leaving the others waiting there.
  let prepared: Failure | undefined;
  let restorableMark: number | undefined; // the epoch of an earlier fit's best mark this fit can restore
  let abandonedBest = false; // the folder's best is of an epoch this resumed fit runs again
  try {
    if (holding && lockLost.error === undefined) folder?.removeKilledWritersFiles();
    // Every rank refuses a folder holding an earlier run's files before the first writes it, but for a run that
    // failed before its first step (a checkpoint of the untrained state alone): a corrected fit replaces it.
    // (Such a run replaced by one that failed as early holds two: its `last` became `previous`.)
    const earlierRun = o.runDir ? runFilesIn(o.runDir) : [];
    const untrainedOnly = (file: string) =>
      (file === 'last.safetensors' || file === 'previous.safetensors') && heldNoStep(o.runDir!, file);
    if (earlierRun.includes('last.safetensors') && earlierRun.every(untrainedOnly)) earlierRun.length = 0;
    if (earlierRun.length > 0) {
      throw new PaceStateError(
        `the run folder ${o.runDir} already holds a run (${earlierRun.join(', ')}): continue it with \`resume\` (pace fit --resume DIR), or write this run to a new folder`,
      );
    }
    // Its config.json would be overwritten, and its files mixed with the run's.
    const foreign = o.runDir ? foreignEntriesIn(o.runDir) : [];
    if (foreign.length > 0) {
      throw new PaceStateError(
        `the run folder ${o.runDir} holds files a run does not write (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''}): write the run to a new or empty folder`,
      );
    }
    if (o.resume && folder) {
      const point = await resumeFrom(host.handle, folder, o.resumeFrom, o.epochs, identity);
      ({ startEpoch, history } = point);
      resumed = point.file !== undefined;
      continuesFrom = point.file;
      if (resumed && run) abandonedBest = await bestIsAbandoned(run, startEpoch);
      const marked = await markedEpoch(path.join(folder.dir, MARKED_BEST_FILE));
      if (marked !== undefined && marked < startEpoch) restorableMark = marked;
    }
  } catch (thrown) {
    if (host.worldSize === 1) throw thrown;
    prepared = { thrown };
  }
  if (host.worldSize > 1 && folder) {
    await agreeOnPreparation(prepared !== undefined, host.rank, o.resume ? 'resume' : 'prepare its run folder');
  }
  if (prepared) throw prepared.thrown;
  if (host.worldSize > 1 && o.resume) await agreeOnStartEpoch({ startEpoch, resumed, history, restorableMark });
  const stopsAlone = host.worldSize === 1;
  // Data-parallel, what fails on one rank by itself (rank 0 writing the run folder, a rank reading its mark of the
  // best epoch) is held until the ranks next share their outcome, this rank still taking part in every collective
  // until then: thrown at once, it would leave the others waiting in their next collective until the group's
  // timeout. A collective's own failure is thrown at once (the others see it too), and so is a state found not finite
  // (every rank holds the same parameters and moments, so every rank finds it).
  let ownFailure: Failure | undefined;
  // A lost lock is this rank's own failure: the folder is another fit's now.
  lockLost.stop = () => {
    ownFailure ??= { thrown: lockLost.error };
    host.handle.abort();
  };
  if (lockLost.error) lockLost.stop();
  const own = async <T>(work: () => T | Promise<T>): Promise<T | undefined> => {
    if (ownFailure !== undefined) {
      if (stopsAlone) throw ownFailure.thrown;
      return undefined;
    }
    if (stopsAlone) return work();
    try {
      return await work();
    } catch (thrown) {
      if (thrown instanceof PaceDistributedError || thrown instanceof PaceDivergedError) throw thrown;
      ownFailure = { thrown };
      return undefined;
    }
  };
  const checkpoint = async (write: (run: RunFolder) => Promise<void>): Promise<void> => {
    if (run && ownFailure === undefined) await own(() => write(run));
    else if (checkpoints) await host.handle.saveState(null, {});
  };
  const runMetadata = { [RUN_IDENTITY_KEY]: JSON.stringify(identity) };
  await own(() => run?.writeConfig(config));
  // A run killed after a checkpoint but before the metrics that follow it resumes with them written again (at its
  // last epoch, nothing else would write them). Resumed from an earlier checkpoint than the metrics reach, the later
  // epochs' metrics stay until this fit's first checkpoint replaces them.
  if (resumed) await own(() => run && run.recordedEpochs() <= history.length && run.writeHistory(history));
  if (!resumed) {
    // Kept apart from the write, whose collective every rank must enter whatever becomes of the link.
    if (run) await own(() => keepPrevious(run));
    await checkpoint((r) => host.handle.saveState(r.lastCheckpoint, { epoch: '-1', history: '[]', ...runMetadata }));
  }
  // Set by every fit, resumed ones included: the rate an earlier fit or setLearningRate left must not decide it.
  if (!schedule) host.setLearningRate(host.lr);

  // Only callbacks use the marks, and none run after a failure of this rank's own.
  const marks = await own(() => bestMarks(host.handle, folder?.dir, writer, startEpoch));
  let stopReason: string | undefined;
  let interrupted: History['interrupted'];
  let restored: History['restored'];
  // The phase whose callbacks run, and (data-parallel) the error that ended it early: a markBest whose agreement
  // found the other ranks elsewhere, the phase's outcome then known to every rank.
  let callbackPhase: string | undefined;
  let phaseEnded: PaceDistributedError | undefined;
  const control: FitControl = {
    stop: (reason = 'stopped by a callback') => {
      stopReason ??= reason;
    },
    markBest: async () => {
      // Once a markBest's agreement ended the phase, the other ranks have left it: a callback that caught that
      // error and asks again would wait in a gather nobody else enters, until the group's timeout.
      if (phaseEnded !== undefined) throw phaseEnded;
      if (!stopsAlone) {
        try {
          await agreeOnMarkBest(host.rank, callbackPhase ?? 'outside the callbacks');
        } catch (error) {
          phaseEnded = error as PaceDistributedError;
          throw error;
        }
      }
      if (lockLost.error !== undefined && writer) {
        // The mark is a file of the run folder, another fit's now: not written (the state still gathered, with
        // every rank).
        if (stopsAlone) throw lockLost.error;
        await host.handle.saveState(null, {});
        return;
      }
      await marks!.mark(history.length - 1);
    },
    restoreBest: async () => {
      const epoch = await marks!.restore();
      if (epoch !== undefined) restored = { epoch };
      return epoch !== undefined;
    },
    validating: validation !== undefined,
    testing: test !== undefined,
    diagnostics: o.diagnostics,
  };
  const onAbort = () => host.handle.abort();
  signal?.addEventListener('abort', onAbort);
  const showProgress = writer && (o.progress === true || (o.progress === 'auto' && process.stderr.isTTY === true));
  const bar = showProgress
    ? new SingleBar({ stream: process.stderr, format: 'epoch {epoch} [{bar}] {value}/{total} loss {loss}', fps: 5 })
    : undefined;
  let bestValidation = Math.max(-Infinity, ...history.map((logs) => logs.val_acc ?? -Infinity));

  // Data-parallel, a rank asked to stop between epochs (a Ctrl-C reaches one machine's ranks) still enters the
  // next epoch, whose first step carries the request to every rank: leaving alone would strand the others in an
  // all-reduce. A callback's stop or failure is shared after each phase that runs callbacks.
  /**
   * After a phase that runs callbacks: data-parallel, every rank shares what its callbacks did (a failure, a stop)
   * before going on, so that all fail or stop together; then this rank's own failure, if any, is thrown.
   */
  const shareOutcome = async (phase: string, failure: Failure | undefined, failed: Failed = 'a callback') => {
    if (!stopsAlone) {
      const here = { failed: failure === undefined ? undefined : failed, stopReason };
      stopReason = await agreeOnPhase(here, host.rank, phase);
    }
    if (failure !== undefined) throw failure.thrown;
  };
  /** Runs a phase's callbacks, unless this rank failed by itself since the last phase: then that is shared. */
  const runCallbacks = async (name: string, call: (callback: Callback) => unknown) => {
    if (ownFailure !== undefined) return shareOutcome(name, ownFailure, 'its own work');
    let failure: Failure | undefined;
    callbackPhase = name;
    try {
      for (const callback of callbacks) await call(callback);
    } catch (thrown) {
      failure = { thrown };
    } finally {
      callbackPhase = undefined;
    }
    if (phaseEnded !== undefined) throw failure ? failure.thrown : phaseEnded; // shared already: no second gather
    await shareOutcome(name, failure);
  };
  try {
    await runCallbacks('in onTrainBegin', (callback) => callback.onTrainBegin?.(control, [...history]));
    for (let epoch = startEpoch; epoch < o.epochs && stopReason === undefined; epoch++) {
      if (signal?.aborted && stopsAlone) {
        stopReason = 'aborted';
        break;
      }
      await runCallbacks(`in epoch ${epoch}'s onEpochBegin`, (callback) => callback.onEpochBegin?.(epoch, control));
      if (signal?.aborted && stopsAlone) {
        stopReason = 'aborted'; // aborted while a callback ran
        break;
      }
      // The rate in force for the epoch without a schedule (a callback may have set it).
      const fixedLr = schedule ? undefined : host.learningRate();
      bar?.start(stepsPerEpoch, 0, { epoch, loss: '-' });
      restored = undefined; // the steps below move the model on from any state restored before
      let batchFailure: Failure | undefined;
      let settled = false;
      let delivered = 0; // steps of this epoch handed to onBatchEnd
      const pendingBatchCalls: Promise<unknown>[] = []; // async onBatchEnd calls, settled before the epoch ends
      const failBatch = (thrown: unknown) => {
        if (batchFailure !== undefined) return;
        batchFailure = { thrown };
        host.handle.abort();
      };
      const batchEnded = (step: number, steps: number, loss: number, lr: number) => {
        // A throwing callback (or an async one that rejects) must not become an uncaught exception: it stops the
        // fit, and fit rethrows it.
        if (batchFailure !== undefined || step <= delivered) return;
        delivered = step;
        try {
          bar?.update(step, { loss: loss.toFixed(4) });
          for (const callback of callbacks) {
            const returned: unknown = callback.onBatchEnd?.(step - 1, { loss, steps, lr });
            if (typeof (returned as PromiseLike<unknown> | undefined)?.then === 'function') {
              pendingBatchCalls.push(Promise.resolve(returned).catch(failBatch));
            }
          }
        } catch (error) {
          failBatch(error);
        }
      };
      let result: Awaited<ReturnType<typeof host.handle.runEpoch>>;
      // Data-parallel, a batch's onBatchEnd may run during the native epoch on one rank and in its replay on
      // another: collective calls are refused throughout, so alike on every rank.
      const leaveEpoch = host.worldSize > 1 ? enterDataParallelEpoch() : () => {};
      try {
        try {
          result = await host.handle.runEpoch(
            handleOf(train.images),
            handleOf(train.labels),
            {
              batchSize: o.batchSize,
              epoch,
              shuffleSeed,
              diagnostics: o.diagnostics,
              schedule: schedule?.options,
              scheduleEachStep: o.scheduleStepping === 'step',
              normalization: normalizationOf(train),
              ...(train.extents && { extents: handleOf(train.extents) }),
              stopRequested: (signal?.aborted ?? false) || lockLost.error !== undefined,
              ...nativeAugmentation(augment),
              stepGraphs: o.stepGraphs,
              // Writes through a view of the pixels between two fits are invisible to libtorch's version counter.
              datasetChanged: epoch === startEpoch,
            },
            (step, steps, loss, lr) => {
              // Progress arrives from the training thread and may trail the epoch's end: what had not arrived by
              // then is handed over below, in order, and the late calls are dropped, also after a failed epoch.
              if (!settled) batchEnded(step, steps, loss, lr);
            },
          );
        } finally {
          settled = true;
        }
        result.stepLosses.forEach((loss, index) => batchEnded(index + 1, stepsPerEpoch, loss, result.stepRates[index]));
        await Promise.all(pendingBatchCalls);
      } finally {
        leaveEpoch();
      }
      bar?.stop();
      await shareOutcome(`in epoch ${epoch}'s onBatchEnd`, batchFailure);
      if (result.aborted) {
        stopReason = 'aborted';
        if (result.steps > 0) interrupted = { epoch, steps: result.steps, stepsPerEpoch };
        break;
      }
      const logs: EpochLogs = {
        epoch,
        loss: result.totalLoss,
        clsLoss: result.clsLoss,
        paceLoss: result.paceLoss,
        acc: result.trainAccuracy,
        lr: (result.learningRate ?? fixedLr) as number,
        // the images the epoch drew (a lazy consistency step's cross-entropy sees half of them: not its pace)
        imagesPerSecond: (result.steps * o.batchSize) / result.seconds,
        seconds: result.seconds,
        ...(host.worldSize > 1 && { communicationSeconds: result.communicationSeconds }),
        ...(result.gradNorm !== undefined && { gradNorm: result.gradNorm, fpDistance: result.fpDistance }),
        ...(o.stepGraphs !== 'off' && { stepGraphs: result.stepGraphs }),
      };
      if ((epoch + 1) % o.evalEvery === 0 || epoch + 1 === o.epochs) {
        // (Data-parallel, a rank's share of the global batch, as timm's validation batch is the per-rank one.)
        const evalBatch = o.evalBatchSize ?? o.batchSize / host.worldSize;
        // Aborted during an evaluation, the epoch is not recorded, as one aborted during its steps: the last
        // checkpoint stays, and a resume runs the epoch again. Data-parallel, the evaluation is collective and
        // runs to its end; the next epoch's first step carries the stop to every rank.
        const evaluate = async (dataset: TensorDataset) => {
          try {
            return await host.evaluate(dataset, evalBatch, stopsAlone ? signal : undefined);
          } catch (error) {
            // Only the stop itself: an evaluation that failed for another reason fails the fit.
            if (stopsAlone && signal?.aborted && error === signal.reason) return undefined;
            throw error;
          }
        };
        // The model holds all the epoch's steps all the same: named, as a stop during them is.
        const stoppedInEvaluation = () => {
          stopReason = 'aborted';
          interrupted = { epoch, steps: stepsPerEpoch, stepsPerEpoch };
        };
        if (validation) {
          const report = await evaluate(validation);
          if (!report) {
            stoppedInEvaluation();
            break;
          }
          Object.assign(logs, { val_acc: report.accuracy, val_loss: report.loss, val_top5: report.top5 });
        }
        if (test) {
          const report = await evaluate(test);
          if (!report) {
            stoppedInEvaluation();
            break;
          }
          Object.assign(logs, { test_acc: report.accuracy, test_top5: report.top5 });
        }
      }
      history.push(logs);
      if (checkpoints) {
        // Every rank sees the same (all-reduced) validation accuracy, so every rank takes the same branch.
        const metadata = { epoch: String(epoch), history: JSON.stringify(history), ...runMetadata };
        // A state that is not finite is refused before the folder's checkpoints are rearranged for it: every rank
        // refuses it alike.
        await host.handle.checkState();
        // before best is rewritten: a resume from best continues from it
        if (run) await own(() => keepPrevious(run, continuesFrom));
        // Gone before the new checkpoints: killed after them, a later resume would take it for this run's.
        await own(() => marks?.forgetAbandoned());
        // Likewise the best of the abandoned continuation; this run has none until an epoch beats its history.
        if (abandonedBest) await own(() => run && removeCheckpoint(run, run.bestCheckpoint));
        abandonedBest = false;
        continuesFrom = undefined;
        if (logs.val_acc !== undefined && logs.val_acc > bestValidation) {
          bestValidation = logs.val_acc;
          await checkpoint((r) => host.handle.saveState(r.bestCheckpoint, metadata));
        }
        await checkpoint((r) => host.handle.saveState(r.lastCheckpoint, metadata));
        await own(() => run?.writeHistory(history));
      }
      await runCallbacks(`in epoch ${epoch}'s onEpochEnd`, (callback) => callback.onEpochEnd?.(epoch, logs, control));
    }
    await runCallbacks('in onTrainEnd', (callback) => callback.onTrainEnd?.(history, control));
    // The lock lost in the last phase's callbacks: the fit ended, but its folder is another's (no collective
    // follows, so rank 0 throws alone).
    if (lockLost.error !== undefined) throw lockLost.error;
  } finally {
    lockLost.stop = undefined;
    bar?.stop();
    signal?.removeEventListener('abort', onAbort);
    marks?.dispose();
    nativeAddon().releaseCachedMemory(); // the activations kept for the next step are not needed any more
  }
  return {
    epochs: history,
    stopReason: stopReason ?? 'completed',
    ...(interrupted && { interrupted }),
    ...(restored && { restored }),
  };
}

/**
 * Fit options as given that the fit would ignore, refused (the user meant something by them): `where` names the
 * object they were given in (`options`, or a config's `fit`).
 */
export function refuseIgnoredFitOptions(given: Record<string, unknown>, where: string): void {
  if (given.resumeFrom !== undefined && given.resume === undefined) {
    throw new PaceOptionError(`${where}.resumeFrom chooses the checkpoint of ${where}.resume: give resume too`);
  }
  if (given.scheduleStepping !== undefined && given.schedule === false) {
    throw new PaceOptionError(`${where}.scheduleStepping steps the cosine schedule, which schedule: false turns off`);
  }
}

/** Whether a run folder's last checkpoint is the one a fit writes before its first step (epoch -1). */
function heldNoStep(dir: string, file: string): boolean {
  try {
    return readTensorHeaderSync(path.join(dir, file)).metadata?.epoch === '-1';
  } catch {
    return false; // unreadable: left for a resume to name
  }
}

/**
 * The training set with fit's own augmentation merged over the dataset's: made as a dataset made with it is (which
 * checks it, and gives grey uint8 images [N, H, W] the channel axis pixel augmentation needs).
 */
function withFitAugmentation(train: TensorDataset, over: Augmentation | undefined): TensorDataset {
  if (!over) return train;
  const merged: Augmentation = { ...train.augment, ...over };
  // crop and resizedCrop are alternatives: the one fit gives replaces the dataset's other
  if (over.resizedCrop) delete merged.crop;
  if (over.crop !== undefined) delete merged.resizedCrop;
  const { normalization, extents } = train;
  return new TensorDataset(train.images, train.labels, { normalization, extents, augment: merged });
}
