import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadDatasetSource, type DatasetSource } from '../data/sources';
import { initDistributed, launchedDistributed, type DistributedGroup } from '../distributed/group';
import { doctor, formatDoctorReport, measureGemm, type GemmMeasurement } from '../doctor';
import { createModel, type Model } from '../models/model';
import { Trainer, type TrainerOptions } from '../train/trainer';
import { ResumeFromSchema, type ResumeFrom } from '../train/checkpoints';
import type { FitOptions } from '../train/fit';
import { readRunConfig, type RunConfig } from './config';
import { DOMAIN_SHIFT_FILE, domainShiftEval, domainShiftTargets } from './domain-shift-eval';
import { evaluateDomainShift } from '../eval/domain-shift';
import { formatDomainShiftTable } from '../eval/domain-shift-table';
import { writeFileAtomic } from '../train/run-folder';
import { launchCommand } from './launch-command';
import { reportCommand } from './report-command';
import { pullCommand } from './pull-command';
import { serveCommand } from './serve-command';
import { sweepCommand } from './sweep-command';
import { numberFlag, UsageError, type Command } from './usage';

export { UsageError };

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

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
async function modelFromConfig(config: RunConfig, group?: DistributedGroup): Promise<Model> {
  const { name, numClasses, imgSize, pretrained, dropPathRate } = config.model;
  // Under nccl each local rank trains on its own GPU (a config's 'cuda' becomes cuda:LOCAL_RANK).
  const device =
    group?.backend === 'nccl' && config.model.device.startsWith('cuda')
      ? `cuda:${group.localRank}`
      : config.model.device;
  const seed = typeof config.trainer.seed === 'number' ? config.trainer.seed : 0;
  const model = await createModel(name, { numClasses, imgSize, pretrained, dropPathRate, device, seed });
  model.addAdapters(config.adapters);
  return model;
}

function resumeFromFlag(text: string): ResumeFrom {
  const parsed = ResumeFromSchema.safeParse(text);
  if (!parsed.success) throw new UsageError(`--resume-from must be last, previous or best, got '${text}'`);
  return parsed.data;
}

function helpRequested(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

export const fitCommand: Command = {
  usage: `pace fit --config run.json [--epochs N] [--batch-size N] [--lr X] [--run-dir DIR] [--resume DIR
  [--resume-from last|previous|best]] [--quiet]
  Fine-tunes the model of run.json with its adapters and PACE settings, writing the run folder
  (config.json, metrics.jsonl, summary.csv, last/best checkpoints) and adapters.safetensors in it.
  Started by \`pace launch\` or torchrun (WORLD_SIZE > 1), it trains data-parallel; rank 0 writes the folder.
  With data.domainShift, a completed fit evaluates those sets into domain-shift.json in the folder.`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        epochs: { type: 'string' },
        'batch-size': { type: 'string' },
        lr: { type: 'string' },
        'run-dir': { type: 'string' },
        resume: { type: 'string' },
        'resume-from': { type: 'string' },
        quiet: { type: 'boolean', default: false },
      },
    });
    if (!values.config) throw new UsageError('--config is required');
    const config = readRunConfig(values.config);
    const trainerOptions = { ...config.trainer } as TrainerOptions & { optimizer?: Record<string, unknown> };
    if (values.lr !== undefined)
      trainerOptions.optimizer = { ...trainerOptions.optimizer, lr: numberFlag('--lr', values.lr) };
    const fit = { ...config.fit } as FitOptions;
    if (values.epochs !== undefined) fit.epochs = numberFlag('--epochs', values.epochs);
    if (values['batch-size'] !== undefined) fit.batchSize = numberFlag('--batch-size', values['batch-size']);
    const runDir = values.resume ?? values['run-dir'] ?? config.runDir;
    if (!runDir) throw new UsageError('a run folder is needed: --run-dir DIR or "runDir" in the config');

    // Launched as one rank of several: join the group before the trainer exists (it broadcasts rank 0's state).
    const group = launchedDistributed() ? await initDistributed() : undefined;
    const rank = group?.rank ?? 0;
    const quiet = values.quiet || rank !== 0;
    using model = await modelFromConfig(config, group);
    const trainer = new Trainer(model, trainerOptions);
    const load = (source: DatasetSource) =>
      loadDatasetSource(source, {
        preprocessing: model.preprocessing,
        baseDir: config.baseDir,
        cacheDir: config.data.cacheDir,
      });
    const train = await load(config.data.train);
    const validation = config.data.validation ? await load(config.data.validation) : undefined;
    const test = config.data.test ? await load(config.data.test) : undefined;
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    try {
      const history = await trainer.fit(train, {
        ...fit,
        validation,
        test,
        signal: controller.signal,
        progress: quiet ? false : 'auto',
        ...(values.resume
          ? {
              resume: values.resume,
              ...(values['resume-from'] && { resumeFrom: resumeFromFlag(values['resume-from']) }),
            }
          : { runDir }),
        callbacks: quiet
          ? []
          : [
              {
                onEpochEnd: (epoch, logs) =>
                  out(
                    `epoch ${epoch}: loss ${logs.loss.toFixed(4)} acc ${logs.acc.toFixed(4)} lr ${logs.lr.toExponential(3)}` +
                      (logs.val_acc === undefined ? '' : ` val_acc ${logs.val_acc.toFixed(4)}`),
                  ),
              },
            ],
      });
      const adapters = path.join(runDir, 'adapters.safetensors');
      if (rank === 0) {
        await model.saveAdapters(adapters);
        out(`${history.stopReason} after ${history.epochs.length} epochs; adapters in ${adapters}`);
        // The domain-adaptation sets of the config, evaluated once training completed, into the run folder.
        const targets = domainShiftTargets(config);
        if (targets && history.stopReason === 'completed') {
          const batchSize = fit.evalBatchSize ?? fit.batchSize;
          const report = await evaluateDomainShift(model, { targets, batchSize });
          writeFileAtomic(path.join(runDir, DOMAIN_SHIFT_FILE), `${JSON.stringify(report, null, 2)}\n`);
          if (!quiet) out(formatDomainShiftTable([{ label: 'this run', report }]));
        }
      }
      return history.stopReason === 'aborted' ? 130 : 0;
    } finally {
      process.removeListener('SIGINT', stop);
    }
  },
};

export const evalCommand: Command = {
  usage: `pace eval --config run.json --adapters FILE [--data FILE] [--batch-size N] [--domain-shift [--markdown]]
  Evaluates fine-tuned adapters on a dataset file (default: the config's test, else validation set) and
  prints top-1/top-5 accuracy, loss and per-class accuracy as JSON. --domain-shift evaluates the config's
  data.domainShift sets instead (ImageNet, -Sketch, -V2, -A, -R; A's and R's logits restricted to their
  200 classes): JSON, or with --markdown the paper's table.`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        adapters: { type: 'string' },
        data: { type: 'string' },
        'batch-size': { type: 'string' },
        'domain-shift': { type: 'boolean', default: false },
        markdown: { type: 'boolean', default: false },
      },
    });
    if (!values.config || !values.adapters) throw new UsageError('--config and --adapters are required');
    const config = readRunConfig(values.config);
    requirePretrained(config);
    if (values['domain-shift']) {
      if (values.data) throw new UsageError('--domain-shift evaluates data.domainShift: it takes no --data');
      using model = await modelFromConfig(config);
      await model.loadAdapters(values.adapters);
      const batchSize = values['batch-size'] ? numberFlag('--batch-size', values['batch-size']) : 64;
      const label = path.basename(path.dirname(path.resolve(values.adapters)));
      out(await domainShiftEval(config, model, { batchSize, markdown: values.markdown, label }));
      return 0;
    }
    const source: DatasetSource | undefined = values.data ?? config.data.test ?? config.data.validation;
    if (!source) throw new UsageError('no dataset: pass --data FILE or give data.test / data.validation in the config');
    using model = await modelFromConfig(config);
    await model.loadAdapters(values.adapters);
    const trainer = new Trainer(model, { ...(config.trainer as TrainerOptions) });
    const dataset = await loadDatasetSource(source, {
      preprocessing: model.preprocessing,
      baseDir: values.data ? process.cwd() : config.baseDir,
      cacheDir: config.data.cacheDir,
    });
    const batchSize = values['batch-size'] ? numberFlag('--batch-size', values['batch-size']) : 64;
    const report = await trainer.evaluate(dataset, { batchSize });
    out(JSON.stringify({ data: source, ...report, confusion: undefined }, null, 2));
    return 0;
  },
};

export const exportCommand: Command = {
  usage: `pace export --config run.json --adapters FILE --merged --out FILE
  Folds the adapters into the backbone and writes a plain timm state dict (safetensors).`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        adapters: { type: 'string' },
        merged: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    });
    if (!values.config || !values.adapters || !values.out)
      throw new UsageError('--config, --adapters and --out are required');
    if (!values.merged)
      throw new UsageError('only --merged export exists: it writes the backbone with the adapters folded in');
    const config = readRunConfig(values.config);
    requirePretrained(config);
    using model = await modelFromConfig(config);
    await model.loadAdapters(values.adapters);
    using merged = await model.merged();
    await merged.saveWeights(values.out, {
      metadata: { exported_by: 'pace-peft', adapters: path.basename(values.adapters) },
    });
    out(`merged weights written to ${values.out}`);
    return 0;
  },
};

export const doctorCommand: Command = {
  usage: `pace doctor [--json] [--gemm] [--device cpu|cuda]
  Reports the libtorch version, CUDA, the BLAS in use and thread settings; exits 1 on the slow reference BLAS.
  --gemm measures float32 GEMM throughput for about two seconds (with one thread and with the
  configured threads, so the gain from threads shows).`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        json: { type: 'boolean', default: false },
        gemm: { type: 'boolean', default: false },
        device: { type: 'string', default: 'cpu' },
      },
    });
    const report = doctor();
    let gemm: GemmMeasurement | undefined;
    let gemmSingleThread: GemmMeasurement | undefined;
    if (values.gemm) {
      const device = values.device;
      if (device === 'cpu' && report.threads.intraOp > 1) {
        gemmSingleThread = await measureGemm({ size: 1024, seconds: 1, device, threads: 1 });
        gemm = await measureGemm({ size: 1024, seconds: 1, device });
      } else {
        gemm = await measureGemm({ size: 1024, seconds: 2, device });
      }
    }
    // bf16 too where libtorch sends it to oneDNN: the rate precision 'bf16' gets on this CPU
    const gemmBf16 =
      values.gemm && values.device === 'cpu' && report.cpuBf16.gemm === 'onednn'
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
