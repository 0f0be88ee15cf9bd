import path from 'node:path';
import { parseArgs } from 'node:util';

import { SweepConfigSchema } from '../sweep/config';
import { sweep, type SweepEvent } from '../sweep/sweep';
import { out } from './output';
import { watchStopSignals } from './signals';
import { numberFlag, parseWithFlags, UsageError, wholeNumberFlag, type Command, type Flags } from './usage';

const accuracy = (name: string, value: number | undefined) =>
  value === undefined ? '' : ` ${name} ${value.toFixed(4)}`;

/** One line per event (epoch lines only with --verbose). */
function describe(event: SweepEvent, verbose: boolean): string | undefined {
  switch (event.type) {
    case 'plan':
      return (
        `sweep in ${event.dir}: ${event.runs} run(s) planned, ${event.finished} finished already; ` +
        `${event.parallel} at a time, ${event.threadsPerRun} thread(s) each`
      );
    case 'skip':
      return `skip ${event.run.name} (finished)`;
    case 'start':
      return (
        `start ${event.run.name} (pid ${event.pid})` +
        (event.resumedFromEpoch === undefined ? '' : ` resumed from epoch ${event.resumedFromEpoch}`)
      );
    case 'epoch':
      return verbose ? `${event.run.name}: ${event.line}` : undefined;
    case 'finish':
      return (
        `finish ${event.run.name}${accuracy('val_acc', event.valAcc)}${accuracy('test_acc', event.testAcc)} ` +
        `(${event.seconds.toFixed(1)} s)`
      );
    case 'fail':
      return `FAILED ${event.run.name}: ${event.message}`;
    case 'kill':
      return `killed ${event.run.name}: it had not stopped ${event.afterSeconds} s after it was interrupted`;
    case 'select':
      return event.label === undefined
        ? `select ${event.task ?? ''}: no tuning run finished, nothing to evaluate`
        : `select ${event.task ?? ''}: ${event.label}${accuracy('val_acc', event.valAcc)}`;
    case 'results':
      return undefined;
  }
}

/** A scheduling flag checked as the sweep config's field of the same name is (`--threads` as `threads`). */
function checkSchedulingFlag(key: 'parallel' | 'threads' | 'gpus', value: unknown): void {
  parseWithFlags(SweepConfigSchema.shape[key], value, key, () => `--${key}`);
}

const SWEEP_FLAGS = {
  config: { type: 'string' },
  dir: { type: 'string' },
  parallel: { type: 'string' },
  threads: { type: 'string' },
  gpus: { type: 'string' },
  verbose: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
} as const satisfies Flags;

/** pace sweep's command line, checked whole before the config is read. */
function sweepFlags(args: string[]) {
  const { values } = parseArgs({ args, options: SWEEP_FLAGS });
  if (!values.config) throw new UsageError('--config is required');
  const count = (key: 'parallel' | 'threads', text: string | undefined) => {
    if (text === undefined) return undefined;
    const value = wholeNumberFlag(`--${key}`, text, 1);
    checkSchedulingFlag(key, value);
    return value;
  };
  const gpus = values.gpus?.split(',').map((text) => {
    const value = numberFlag('--gpus', text);
    if (!Number.isInteger(value) || value < 0) throw new UsageError('--gpus lists GPU indices: 0,1,...');
    return value;
  });
  if (gpus) checkSchedulingFlag('gpus', gpus);
  return {
    config: values.config,
    dir: values.dir,
    parallel: count('parallel', values.parallel),
    threads: count('threads', values.threads),
    gpus,
    verbose: values.verbose === true,
    quiet: values.quiet === true,
  };
}

export const sweepCommand: Command = {
  flags: SWEEP_FLAGS,
  summary: 'Runs a grid of settings over tasks and seeds, one pace fit each, resumably',
  usage: `pace sweep --config sweep.json [--dir DIR] [--parallel N] [--threads N] [--gpus 0,1] [--verbose] [--quiet]
  Runs a sweep: a grid (or list) of settings over tasks and seeds, each run a pace fit in its own folder under
  the sweep folder; under the paper's protocol each task's setting is chosen on its tuning split and re-run on
  its evaluation split with every seed. Writes results.csv and results.md (mean ± std, VTAB by group). Run again
  on the same folder, it skips finished runs and continues a killed one from its checkpoint. Ctrl-C or SIGTERM
  stops it, each running run at its checkpoint (exit 130 or 143).`,
  async run(args) {
    const flags = sweepFlags(args);
    using stop = watchStopSignals();
    const outcome = await sweep(flags.config, {
      dir: flags.dir,
      parallel: flags.parallel,
      threads: flags.threads,
      gpus: flags.gpus,
      signal: stop.signal,
      onEvent: (event) => {
        const line = flags.quiet ? undefined : describe(event, flags.verbose);
        if (line !== undefined) out(line);
      },
    });
    out(`results in ${path.join(outcome.dir, 'results.md')} and results.csv`);
    if (outcome.aborted) return stop.exitCode() ?? 130;
    return outcome.failed.length > 0 ? 1 : 0;
  },
};
