import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { EVAL_TRANSFORM_METADATA_KEY } from '../data/eval-transform';
import {
  DatasetSourceSchema,
  evaluationTransformOf,
  folderClassNames,
  loadDatasetSource,
  type DatasetSource,
} from '../data/sources';
import { PaceOptionError } from '../errors';
import { withContext } from '../error-context';
import { initDistributed, launchedDistributed, type DistributedGroup } from '../distributed/group';
import { doctor, formatDoctorReport, measureGemm, type GemmMeasurement } from '../doctor';
import { createModel, type Model } from '../models/model';
import type { EpochLogs } from '../train/callbacks';
import { Trainer, TrainerOptionsSchema, type TrainerOptions } from '../train/trainer';
import { ResumeFromSchema, type ResumeFrom } from '../train/checkpoints';
import { FitOptionsSchema, refuseIgnoredFitOptions, type FitOptions, type History } from '../train/fit';
import { DOMAIN_SHIFT_FILE, holdRunFolder, RUN_ADAPTERS_FILE } from '../train/run-folder';
import { cacheDirOf, configName, datasetSizeFromData, readRunConfig, trainerAsChecked, type RunConfig } from './config';
import { domainShiftEval, domainShiftTargets, trainingNormalization } from './domain-shift-eval';
import { checkDomainShiftTargets, evaluateDomainShift } from '../eval/domain-shift';
import { formatDomainShiftTable } from '../eval/domain-shift-table';
import { writeFileAtomic } from '../files';
import { launchCommand } from './launch-command';
import { reportCommand } from './report-command';
import { pullCommand } from './pull-command';
import { serveCommand } from './serve-command';
import { sweepCommand } from './sweep-command';
import { out } from './output';
import { watchStopSignals } from './signals';
import {
  deviceFlag,
  numberFlag,
  ownArguments,
  parseWithFlags,
  UsageError,
  wholeNumberFlag,
  type Command,
  type Flags,
} from './usage';

export { UsageError };

/** Adapters only mean something on the backbone they were trained on: a random one will not do. */
function requirePretrained(config: RunConfig): void {
  if (!config.model.pretrained) {
    throw new UsageError('model.pretrained is required: adapters only fit the backbone weights they were trained with');
  }
}

/**
 * The config's model with its adapters. The initialisation (the adapters' up projections, a new head) is seeded
 * with the trainer's seed, as the reference seeds everything before building the model: two `pace fit` runs of
 * one config end with the same weights.
 */
async function modelFromConfig(
  config: RunConfig,
  { group, quiet = false }: { group?: DistributedGroup; quiet?: boolean } = {},
): Promise<Model> {
  const { name, numClasses, imgSize, pretrained, dropPathRate } = config.model;
  // Under nccl each local rank trains on its own GPU (a config's 'cuda' becomes cuda:LOCAL_RANK).
  const device =
    group?.backend === 'nccl' && config.model.device.startsWith('cuda')
      ? `cuda:${group.localRank}`
      : config.model.device;
  const seed = typeof config.trainer.seed === 'number' ? config.trainer.seed : 0;
  // Weights by name are downloaded with a progress bar on a TTY, unless quiet.
  const hub = { progress: quiet ? false : ('auto' as const) };
  const model = await createModel(name, { numClasses, imgSize, pretrained, hub, dropPathRate, device, seed });
  model.addAdapters(config.adapters);
  return model;
}

function resumeFromFlag(text: string): ResumeFrom {
  const parsed = ResumeFromSchema.safeParse(text);
  if (!parsed.success) throw new UsageError(`--resume-from must be last, previous or best, got '${text}'`);
  return parsed.data;
}

/** Whether a command's own arguments (those before a `--`) ask for its usage. */
function helpRequested(args: string[]): boolean {
  const own = ownArguments(args);
  return own.includes('--help') || own.includes('-h');
}

/** pace fit's command line, checked whole before any file is read. */
interface FitFlags {
  config: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  runDir?: string;
  resume?: string;
  resumeFrom?: ResumeFrom;
  quiet: boolean;
}

const FIT_FLAGS = {
  config: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  'run-dir': { type: 'string' },
  resume: { type: 'string' },
  'resume-from': { type: 'string' },
  quiet: { type: 'boolean', default: false },
} as const satisfies Flags;

function fitFlags(args: string[]): FitFlags {
  const { values } = parseArgs({ args, options: FIT_FLAGS });
  if (!values.config) throw new UsageError('--config is required');
  if (values.resume !== undefined && values['run-dir'] !== undefined) {
    throw new UsageError('--resume DIR continues the run in DIR: it takes no --run-dir');
  }
  if (values['resume-from'] !== undefined && values.resume === undefined) {
    throw new UsageError('--resume-from chooses the checkpoint of --resume DIR: give --resume too');
  }
  const optional = <T>(text: string | undefined, parse: (text: string) => T) =>
    text === undefined ? undefined : parse(text);
  return {
    config: values.config,
    epochs: optional(values.epochs, (text) => wholeNumberFlag('--epochs', text, 1)),
    batchSize: optional(values['batch-size'], (text) => wholeNumberFlag('--batch-size', text, 1)),
    lr: optional(values.lr, (text) => numberFlag('--lr', text)),
    runDir: values['run-dir'],
    resume: values.resume,
    resumeFrom: optional(values['resume-from'], resumeFromFlag),
    quiet: values.quiet === true,
  };
}

/**
 * The config's trainer and fit options with the flags over them, checked as Trainer and Trainer.fit check them
 * before the model, the data or the process group are loaded. A bad value names its flag, or the config's field.
 */
function fitSettings(
  config: RunConfig,
  flags: FitFlags,
): { trainer: TrainerOptions; fit: FitOptions; datasetSizeFromData: boolean } {
  const what = configName(flags.config);
  const optimizer = { ...(config.trainer.optimizer as object), ...(flags.lr !== undefined && { lr: flags.lr }) };
  const trainer = { ...config.trainer, ...(flags.lr !== undefined && { optimizer }) };
  const fit = {
    ...config.fit,
    ...(flags.epochs !== undefined && { epochs: flags.epochs }),
    ...(flags.batchSize !== undefined && { batchSize: flags.batchSize }),
  };
  const given: Record<string, string | undefined> = {
    'optimizer.lr': flags.lr === undefined ? undefined : '--lr',
    epochs: flags.epochs === undefined ? undefined : '--epochs',
    batchSize: flags.batchSize === undefined ? undefined : '--batch-size',
  };
  const flagOf = (field: string) => (Object.hasOwn(given, field) ? given[field] : undefined);
  parseWithFlags(TrainerOptionsSchema, trainerAsChecked(trainer), `${what}.trainer`, flagOf);
  parseWithFlags(FitOptionsSchema, fit, `${what}.fit`, flagOf);
  refuseIgnoredFitOptions(fit, `${what}.fit`);
  // The rate in force, from the flag or the file: a file's 0 was found only after the model and data had loaded.
  const lr = (trainer as { optimizer?: { lr?: unknown } }).optimizer?.lr;
  if (lr === 0 && (fit as { schedule?: unknown }).schedule !== false) {
    const why = '0 is no peak for the cosine schedule; give a positive rate, or "schedule": false';
    throw flags.lr === 0 ? new UsageError(`--lr: ${why}`) : new PaceOptionError(`${what}.trainer.optimizer.lr: ${why}`);
  }
  // The fast variant's datasetSize, when the config leaves it out, is the training set's, known once it is loaded.
  return {
    trainer: trainer as TrainerOptions,
    fit: fit as FitOptions,
    datasetSizeFromData: datasetSizeFromData(trainer),
  };
}

/**
 * The config's domain-adaptation sets, evaluated after a completed fit into the run folder. A stop signal ends the
 * evaluation after the chunk of images in progress, with nothing written; returns whether it completed.
 */
async function domainShiftAfterFit(
  model: Model,
  config: RunConfig,
  options: { runDir: string; batchSize: number; signal: AbortSignal; quiet: boolean },
): Promise<boolean> {
  const targets = domainShiftTargets(config);
  if (!targets) return true;
  let report;
  try {
    report = await evaluateDomainShift(model, {
      targets,
      batchSize: options.batchSize,
      signal: options.signal,
      normalization: trainingNormalization(config, model),
    });
  } catch (error) {
    if (!options.signal.aborted || error !== options.signal.reason) throw error;
    out(`domain-shift evaluation interrupted by ${String(options.signal.reason)}: ${DOMAIN_SHIFT_FILE} not written`);
    return false;
  }
  writeFileAtomic(path.join(options.runDir, DOMAIN_SHIFT_FILE), `${JSON.stringify(report, null, 2)}\n`);
  if (!options.quiet) out(formatDomainShiftTable([{ label: 'this run', report }]));
  return true;
}

/** The epoch lines pace fit prints. */
const epochLine = (epoch: number, logs: EpochLogs): string =>
  `epoch ${epoch}: loss ${logs.loss.toFixed(4)} acc ${logs.acc.toFixed(4)} lr ${logs.lr.toExponential(3)}` +
  (logs.val_acc === undefined ? '' : ` val_acc ${logs.val_acc.toFixed(4)}`);

/**
 * How pace fit ended. A stop within an epoch says so: the adapters hold its steps, while the run's checkpoint (and so
 * a resume) is at the end of the epoch before.
 */
export function stopLine({ stopReason, epochs, interrupted }: History, adapters: string): string {
  if (!interrupted) return `${stopReason} after ${epochs.length} epochs; adapters in ${adapters}`;
  const { epoch, steps, stepsPerEpoch } = interrupted;
  return (
    `${stopReason} after ${epochs.length} epochs and ${steps} of epoch ${epoch}'s ${stepsPerEpoch} steps; adapters in ` +
    `${adapters} (with those steps; a resume starts again at epoch ${epoch})`
  );
}

export const fitCommand: Command = {
  summary: 'Fine-tunes the model of run.json with its adapters and PACE settings into a run folder',
  flags: FIT_FLAGS,
  usage: `pace fit --config run.json [--epochs N] [--batch-size N] [--lr X] [--run-dir DIR] [--resume DIR
  [--resume-from last|previous|best]] [--quiet]
  Fine-tunes the model of run.json with its adapters and PACE settings, writing the run folder
  (config.json, metrics.jsonl, summary.csv, last/best checkpoints) and adapters.safetensors in it.
  Started by \`pace launch\` or torchrun (WORLD_SIZE > 1), it trains data-parallel; rank 0 writes the folder.
  With data.domainShift, a completed fit evaluates those sets into domain-shift.json in the folder (their lists
  are checked before training: lines, labels, and that each image exists).
  Ctrl-C or SIGTERM stops it at the step in progress, keeping the checkpoint and writing the adapters
  (exit 130 or 143); a second one ends it at once.`,
  async run(args) {
    const flags = fitFlags(args);
    const config = readRunConfig(flags.config);
    const settings = fitSettings(config, flags);
    const runDir = flags.resume ?? flags.runDir ?? config.runDir;
    if (!runDir) throw new UsageError('a run folder is needed: --run-dir DIR or "runDir" in the config');

    // Launched as one rank of several: join the group before the trainer exists (it broadcasts rank 0's state).
    const group = launchedDistributed() ? await initDistributed() : undefined;
    const rank = group?.rank ?? 0;
    const quiet = flags.quiet || rank !== 0;
    using model = await modelFromConfig(config, { group, quiet });
    // A bad domain-adaptation list is found now, not after the training that precedes its evaluation.
    const shiftTargets = domainShiftTargets(config);
    if (shiftTargets) checkDomainShiftTargets(shiftTargets, model.spec.numClasses);
    const newTrainer = (datasetSize?: number) =>
      new Trainer(
        model,
        datasetSize ? { ...settings.trainer, pace: { ...settings.trainer.pace, datasetSize } } : settings.trainer,
      );
    let trainer = settings.datasetSizeFromData ? undefined : newTrainer();
    // Held-out image folders are labelled by the training folder's class names, not by their own subfolders.
    const classNames = folderClassNames(config.data.train, config.baseDir);
    const load = (source: DatasetSource) =>
      loadDatasetSource(source, {
        preprocessing: model.preprocessing,
        baseDir: config.baseDir,
        cacheDir: cacheDirOf(config),
        numClasses: model.spec.numClasses,
        classNames,
      });
    const train = await load(config.data.train);
    trainer ??= newTrainer(train.length);
    // The adapters record the names, for pace eval and (through pace export) pace serve. A head with more classes
    // than the folder has is left unnamed: the names the pretrained head came with are not its classes any more.
    if (classNames) model.classNames = classNames.length === model.spec.numClasses ? classNames : undefined;
    const validation = config.data.validation ? await load(config.data.validation) : undefined;
    const test = config.data.test ? await load(config.data.test) : undefined;
    // From here until the command ends (the domain-adaptation evaluation included), a stop signal stops it cleanly.
    using stop = watchStopSignals();
    const history = await trainer.fit(train, {
      ...settings.fit,
      validation,
      test,
      signal: stop.signal,
      progress: quiet ? false : 'auto',
      ...(flags.resume ? { resume: flags.resume, resumeFrom: flags.resumeFrom } : { runDir }),
      callbacks: quiet ? [] : [{ onEpochEnd: (epoch, logs) => out(epochLine(epoch, logs)) }],
    });
    if (rank === 0) {
      // The fit has let the folder go: its last files are written under the lock again, so a fit or resume
      // started meanwhile into the same folder is refused here, before either overwrites the other's files.
      const release = holdRunFolder(runDir);
      try {
        const adapters = path.join(runDir, RUN_ADAPTERS_FILE);
        await model.saveAdapters(adapters);
        out(stopLine(history, adapters));
        if (history.stopReason === 'completed') {
          const batchSize = settings.fit.evalBatchSize ?? settings.fit.batchSize;
          await domainShiftAfterFit(model, config, { runDir, batchSize, signal: stop.signal, quiet });
        }
      } finally {
        release();
      }
    }
    return stop.exitCode() ?? (history.stopReason === 'aborted' ? 130 : 0);
  },
};

/** pace eval's command line, checked whole before any file is read. */
const EVAL_FLAGS = {
  config: { type: 'string' },
  adapters: { type: 'string' },
  data: { type: 'string' },
  'batch-size': { type: 'string' },
  'domain-shift': { type: 'boolean', default: false },
  markdown: { type: 'boolean', default: false },
  'allow-other-weights': { type: 'boolean', default: false },
} as const satisfies Flags;

function evalFlags(args: string[]) {
  const { values } = parseArgs({ args, options: EVAL_FLAGS });
  if (!values.config || !values.adapters) throw new UsageError('--config and --adapters are required');
  if (values.markdown && !values['domain-shift']) {
    throw new UsageError('--markdown formats the --domain-shift table: give --domain-shift too');
  }
  if (values['domain-shift'] && values.data) {
    throw new UsageError('--domain-shift evaluates data.domainShift: it takes no --data');
  }
  const batchSize = values['batch-size'] === undefined ? 64 : wholeNumberFlag('--batch-size', values['batch-size'], 1);
  return {
    config: values.config,
    adapters: values.adapters,
    data: values.data === undefined ? undefined : dataFlag(values.data),
    batchSize,
    domainShift: values['domain-shift'] === true,
    markdown: values.markdown === true,
    allowOtherWeights: values['allow-other-weights'] === true,
  };
}

/**
 * pace eval's --data: a data source as the config writes one (JSON), an image folder (a directory), or a
 * safetensors file of images and labels (anything else); relative paths are the working folder's.
 */
function dataFlag(value: string): DatasetSource {
  if (value === '')
    throw new UsageError('--data needs a dataset: a safetensors file, an image folder, or a JSON source');
  if (value.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      throw new UsageError(`--data: not valid JSON (${(error as Error).message})`);
    }
    const checked = DatasetSourceSchema.safeParse(parsed);
    if (!checked.success) {
      throw new UsageError(`--data: not a data source as data.test takes one (${checked.error.issues[0].message})`);
    }
    return checked.data;
  }
  return fs.statSync(value, { throwIfNoEntry: false })?.isDirectory() ? { folder: value } : value;
}

export const evalCommand: Command = {
  summary: 'Evaluates fine-tuned adapters: accuracy, loss and per-class accuracy as JSON',
  flags: EVAL_FLAGS,
  usage: `pace eval --config run.json --adapters FILE [--data FILE|DIR|JSON] [--batch-size N] [--domain-shift [--markdown]]
          [--allow-other-weights]
  Evaluates fine-tuned adapters on --data (a safetensors file, an image folder labelled by the class names the
  adapters record, or a data source as the config writes one; default: the config's test, else validation set) and
  prints top-1/top-5 accuracy, loss and per-class accuracy as JSON. --domain-shift evaluates the config's
  data.domainShift sets instead (ImageNet, -Sketch, -V2, -A, -R; A's and R's logits restricted to their
  200 classes): JSON, or with --markdown the paper's table. Adapters trained on other frozen weights than the
  config's are refused unless --allow-other-weights.`,
  async run(args) {
    const flags = evalFlags(args);
    const config = readRunConfig(flags.config);
    requirePretrained(config);
    const { batchSize } = flags;
    if (flags.domainShift) {
      using model = await modelFromConfig(config);
      await model.loadAdapters(flags.adapters, { allowOtherWeights: flags.allowOtherWeights });
      const label = path.basename(path.dirname(path.resolve(flags.adapters)));
      out(await domainShiftEval(config, model, { batchSize, markdown: flags.markdown, label }));
      return 0;
    }
    const source: DatasetSource | undefined = flags.data ?? config.data.test ?? config.data.validation;
    if (!source) throw new UsageError('no dataset: pass --data FILE or give data.test / data.validation in the config');
    using model = await modelFromConfig(config);
    await model.loadAdapters(flags.adapters, { allowOtherWeights: flags.allowOtherWeights });
    const trainer = new Trainer(model, { ...(trainerAsChecked(config.trainer) as TrainerOptions) });
    const dataset = await loadDatasetSource(source, {
      preprocessing: model.preprocessing,
      baseDir: flags.data ? process.cwd() : config.baseDir,
      cacheDir: cacheDirOf(config),
      numClasses: model.spec.numClasses,
      // an image folder is labelled as the run's training folder was: by the names the adapters record, or
      // else by that folder's (which must still be there)
      classNames:
        typeof source !== 'string' && 'folder' in source ? (model.classNames ?? trainingClassNames(config)) : undefined,
    });
    const report = await trainer.evaluate(dataset, { batchSize });
    out(JSON.stringify({ data: source, ...report, confusion: undefined }, null, 2));
    return 0;
  },
};

/**
 * The class names an image folder is labelled by in `pace eval`: the run's training folder's (its labels are the
 * model's classes). A training folder that is gone is an error saying so, rather than labels guessed from the
 * evaluation folder's own subfolders (which shift when it lacks a class).
 */
function trainingClassNames(config: ReturnType<typeof readRunConfig>): string[] | undefined {
  try {
    return folderClassNames(config.data.train, config.baseDir);
  } catch (error) {
    throw withContext(
      error,
      `an image folder is labelled by the class names of the run's training folder (data.train), which cannot be ` +
        `read: ${(error as Error).message}; restore it there, or evaluate a split list or tensor file instead`,
    );
  }
}

const EXPORT_FLAGS = {
  config: { type: 'string' },
  adapters: { type: 'string' },
  merged: { type: 'boolean', default: false },
  out: { type: 'string' },
  'allow-other-weights': { type: 'boolean', default: false },
} as const satisfies Flags;

export const exportCommand: Command = {
  summary: 'Folds the adapters into the backbone: a timm state dict for pace serve or timm',
  flags: EXPORT_FLAGS,
  usage: `pace export --config run.json --adapters FILE --merged --out FILE [--allow-other-weights]
  Folds the adapters into the backbone and writes a plain timm state dict (safetensors), recording the class
  names (when the run knew them) and how the run evaluated images (resize, crop, mean, std), which pace serve
  applies to uploads. Adapters trained on other frozen weights than the config's are refused unless
  --allow-other-weights.`,
  async run(args) {
    const { values } = parseArgs({ args, options: EXPORT_FLAGS });
    if (!values.config || !values.adapters || !values.out)
      throw new UsageError('--config, --adapters and --out are required');
    if (!values.merged)
      throw new UsageError('only --merged export exists: it writes the backbone with the adapters folded in');
    const config = readRunConfig(values.config);
    requirePretrained(config);
    using model = await modelFromConfig(config);
    await model.loadAdapters(values.adapters, { allowOtherWeights: values['allow-other-weights'] === true });
    using merged = await model.merged();
    // How the run evaluated, for pace serve: its held-out set's transform (the training set's when it has none).
    const evaluated = config.data.test ?? config.data.validation ?? config.data.train;
    const transform = evaluationTransformOf(evaluated, model.preprocessing, config.baseDir);
    await merged.saveWeights(values.out, {
      metadata: {
        exported_by: 'pace-peft',
        adapters: path.basename(values.adapters),
        [EVAL_TRANSFORM_METADATA_KEY]: JSON.stringify(transform),
      },
    });
    out(`merged weights written to ${values.out}`);
    return 0;
  },
};

const DOCTOR_FLAGS = {
  json: { type: 'boolean', default: false },
  gemm: { type: 'boolean', default: false },
  device: { type: 'string' },
} as const satisfies Flags;

export const doctorCommand: Command = {
  summary: 'Reports libtorch, CUDA, the BLAS and threads; exits 1 on the slow reference BLAS',
  flags: DOCTOR_FLAGS,
  usage: `pace doctor [--json] [--gemm [--device cpu|cuda]]
  Reports the libtorch version, CUDA, the BLAS in use and thread settings; exits 1 on the slow reference BLAS.
  --gemm measures float32 GEMM throughput for about two seconds (with one thread and with the
  configured threads, so the gain from threads shows).`,
  async run(args) {
    const { values } = parseArgs({ args, options: DOCTOR_FLAGS });
    if (values.device !== undefined && !values.gemm) {
      throw new UsageError('--device chooses where --gemm measures: give --gemm too');
    }
    const report = doctor();
    let gemm: GemmMeasurement | undefined;
    let gemmSingleThread: GemmMeasurement | undefined;
    const device = deviceFlag(values.device ?? 'cpu');
    if (values.gemm) {
      if (device === 'cpu' && report.threads.intraOp > 1) {
        gemmSingleThread = await measureGemm({ size: 1024, seconds: 1, device, threads: 1 });
        gemm = await measureGemm({ size: 1024, seconds: 1, device });
      } else {
        gemm = await measureGemm({ size: 1024, seconds: 2, device });
      }
    }
    // bf16 too where libtorch sends it to oneDNN: the rate precision 'bf16' gets on this CPU
    const gemmBf16 =
      values.gemm && device === 'cpu' && report.cpuBf16.gemm === 'onednn'
        ? await measureGemm({ size: 1024, seconds: 1, device: 'cpu', dtype: 'bfloat16' })
        : undefined;
    const measured = [gemmSingleThread, gemm, gemmBf16].filter((m): m is GemmMeasurement => m !== undefined);
    out(
      values.json
        ? JSON.stringify({ ...report, gemm, gemmSingleThread, gemmBf16 }, null, 2)
        : formatDoctorReport(report, measured),
    );
    return report.blas.kind === 'reference' ? 1 : 0;
  },
};

export const commands: Record<string, Command> = {
  fit: fitCommand,
  launch: launchCommand,
  sweep: sweepCommand,
  eval: evalCommand,
  export: exportCommand,
  serve: serveCommand,
  report: reportCommand,
  pull: pullCommand,
  doctor: doctorCommand,
};

export { helpRequested };
