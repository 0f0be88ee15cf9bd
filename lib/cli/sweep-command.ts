import path from 'node:path';
import { parseArgs } from 'node:util';

import { sweep, type SweepEvent } from '../sweep/sweep';
import { numberFlag, UsageError, type Command } from './usage';

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
    case 'select':
      return event.label === undefined
        ? `select ${event.task ?? ''}: no tuning run finished, nothing to evaluate`
        : `select ${event.task ?? ''}: ${event.label}${accuracy('val_acc', event.valAcc)}`;
    case 'results':
      return undefined;
  }
}

export const sweepCommand: Command = {
  usage: `pace sweep --config sweep.json [--dir DIR] [--parallel N] [--threads N] [--gpus 0,1] [--verbose] [--quiet]
  Runs a sweep: a grid (or list) of settings over tasks and seeds, each run a pace fit in its own folder under
  the sweep folder; under the paper's protocol each task's setting is chosen on its tuning split and re-run on
  its evaluation split with every seed. Writes results.csv and results.md (mean ± std, VTAB by group). Run again
  on the same folder, it skips finished runs and continues a killed one from its checkpoint. Ctrl-C stops it.`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        dir: { type: 'string' },
        parallel: { type: 'string' },
        threads: { type: 'string' },
        gpus: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
      },
    });
    if (!values.config) throw new UsageError('--config is required');
    const count = (name: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      const value = numberFlag(name, text);
      if (!Number.isInteger(value) || value < 1) throw new UsageError(`${name} must be a whole number from 1`);
      return value;
    };
    const gpus = values.gpus?.split(',').map((text) => {
      const value = numberFlag('--gpus', text);
      if (!Number.isInteger(value) || value < 0) throw new UsageError('--gpus lists GPU indices: 0,1,...');
      return value;
    });
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    try {
      const outcome = await sweep(values.config, {
        dir: values.dir,
        parallel: count('--parallel', values.parallel),
        threads: count('--threads', values.threads),
        gpus,
        signal: controller.signal,
        onEvent: (event) => {
          const line = values.quiet ? undefined : describe(event, values.verbose === true);
          if (line !== undefined) process.stdout.write(`${line}\n`);
        },
      });
      process.stdout.write(`results in ${path.join(outcome.dir, 'results.md')} and results.csv\n`);
      if (outcome.aborted) return 130;
      return outcome.failed.length > 0 ? 1 : 0;
    } finally {
      process.removeListener('SIGINT', stop);
    }
  },
};
