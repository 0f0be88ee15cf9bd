import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { z } from 'zod';

import { PaceBusyError, PaceOptionError } from '../errors';
import type { LockTiming } from '../folder-lock';
import { MAX_TIMER_MS, parseOptions } from '../options';
import { writeFileAtomic } from '../files';
import { identityOf, parseSweepConfig, readSweepConfig, type SweepConfig, type SweepConfigInput } from './config';
import { checkSplitLists } from './split-lists';
import { resultsCsv } from './csv';
import { openSweepFolder } from './folder';
import { defaultChildModule, launchRun, type RunProcess } from './launch';
import { resultsMarkdown } from './markdown';
import { SweepPlan, type PlannedRun, type RunStage } from './plan';
import { readRows, selectionOf, summarize, taskInfo, type Selection, type SweepResults } from './results';
import { checkpointOf, markFailed, markFinished, runStatus, type FinalMetrics } from './run-state';
import type { SweepTask } from './tasks';
import { SWEEP_RUN_LOG_FILE } from '../train/run-folder';

/** A run as progress events name it. */
export interface RunInfo {
  name: string;
  dir: string;
  stage: RunStage;
  task?: string;
  /** Its setting: `σ 0.5, λ 1`. */
  label: string;
  seed: number;
}

/** What a sweep reports while it runs. */
export type SweepEvent =
  | { type: 'plan'; dir: string; runs: number; finished: number; parallel: number; threadsPerRun: number }
  | { type: 'skip'; run: RunInfo }
  | { type: 'start'; run: RunInfo; pid: number; resumedFromEpoch?: number }
  | { type: 'epoch'; run: RunInfo; epoch: number; epochs: number; line: string }
  | { type: 'finish'; run: RunInfo; valAcc?: number; testAcc?: number; seconds: number }
  | { type: 'fail'; run: RunInfo; message: string }
  /** An interrupted run that had not ended `afterSeconds` later was killed (its last checkpoint is kept). */
  | { type: 'kill'; run: RunInfo; afterSeconds: number }
  | { type: 'select'; task?: string; label?: string; valAcc?: number }
  | { type: 'results'; csv: string; markdown: string };

export interface SweepOptions {
  /** The sweep folder (default: the config's `dir`). */
  dir?: string;
  /** Runs at a time, CPU threads in all, GPUs: override the config's. */
  parallel?: number;
  threads?: number;
  gpus?: number[];
  /** Relative paths of a config given as a value resolve against this folder (default: the working directory). */
  baseDir?: string;
  onEvent?: (event: SweepEvent) => void;
  /** Stops the sweep: each running run is interrupted (its checkpoint kept) and nothing new starts. */
  signal?: AbortSignal;
  /** The module each run's `pace fit` is forked from (default: dist's sweep/run-child.js). */
  childModule?: string;
  /**
   * How long an interrupted run may take to end its step and write its checkpoint before it is killed (default
   * 120 s): a run stuck in a step or a collective would otherwise keep the sweep from ending.
   */
  stopTimeoutSeconds?: number;
  /** @internal How often the folder's lock is touched, and how long another host waits to take it over (tests). */
  lockTiming?: LockTiming;
}

/** What a sweep did. */
export interface SweepOutcome extends SweepResults {
  dir: string;
  /** Stopped by its signal before every run finished. */
  aborted: boolean;
  /** The runs that failed (their folders hold failed.json and fit.log). */
  failed: string[];
}

/** The CPU threads each of `parallel` concurrent runs gets out of `threads` (at least one). */
export function threadsPerRun(threads: number, parallel: number): number {
  return Math.max(1, Math.floor(threads / parallel));
}

/** The environment of a run in slot `slot`: its share of the threads, and its GPU when GPUs are listed. */
export function runEnvironment(
  base: NodeJS.ProcessEnv,
  options: { threads: number; slot: number; gpus?: number[] },
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    PACE_NUM_THREADS: String(options.threads),
    OMP_NUM_THREADS: String(options.threads),
  };
  if (options.gpus) env.CUDA_VISIBLE_DEVICES = String(options.gpus[options.slot % options.gpus.length]);
  return env;
}

const EPOCH_LINE = /^epoch (\d+): /;

/**
 * Runs a sweep (a config file's path, or the config as a value): every run a child process (`pace fit`) in its own
 * folder under the sweep folder, `parallel` at a time, sharing the CPU threads. Under the `select` protocol each
 * task's point is chosen on its tuning split, then run on its evaluation split with every seed. Finished runs of
 * an earlier, stopped sweep of the folder are not run again; a killed one continues from its last checkpoint.
 * `results.csv` and `results.md` are rewritten in the folder after every run. Should anything go wrong on the way,
 * every running run is interrupted (at its checkpoint) and has ended before the error is thrown and the folder's
 * lock released.
 */
export async function sweep(config: string | SweepConfigInput, options: SweepOptions = {}): Promise<SweepOutcome> {
  const parsed: SweepConfig =
    typeof config === 'string' ? readSweepConfig(config) : parseSweepConfig(config, options.baseDir ?? process.cwd());
  const dir = options.dir ? path.resolve(options.dir) : parsed.dir;
  if (!dir) throw new PaceOptionError('a sweep folder is needed: "dir" in the config, or the dir option (--dir)');
  const gpus = options.gpus ?? parsed.gpus;
  const parallel = options.parallel ?? parsed.parallel ?? gpus?.length ?? 1;
  const threads = threadsPerRun(options.threads ?? parsed.threads ?? os.availableParallelism(), parallel);
  const plan = new SweepPlan(parsed, dir);
  checkSplitLists(plan);
  const childModule = options.childModule ?? defaultChildModule();
  const emit = (event: SweepEvent) => options.onEvent?.(event);
  const stopTimeoutSeconds = parseOptions(
    z
      .number()
      .positive()
      .max(Math.floor(MAX_TIMER_MS / 1000))
      .default(DEFAULT_STOP_TIMEOUT_SECONDS),
    options.stopTimeoutSeconds,
    'options.stopTimeoutSeconds',
  );
  // Another host may take the folder over while this process is suspended: its runs are then interrupted at their
  // checkpoints and nothing more is written (the results files are the other sweep's now).
  const lockLost = new AbortController();
  const onLost = (now: string) =>
    lockLost.abort(
      new PaceBusyError(
        `the sweep folder ${dir}: its lock was taken over (${now}) while this sweep was not running (suspended, ` +
          'or stopped, for longer than a lock is kept); its runs were stopped at their checkpoints and no results ' +
          'written since',
      ),
    );
  const configFile = typeof config === 'string' ? config : undefined;
  const release = openSweepFolder(dir, identityOf(parsed), configFile, { timing: options.lockTiming, onLost });
  try {
    const scheduling = {
      parallel,
      threads,
      gpus,
      childModule,
      emit,
      signal: options.signal,
      lockLost: lockLost.signal,
    };
    const outcome = await new Scheduler(plan, { ...scheduling, stopTimeoutSeconds }).run();
    lockLost.signal.throwIfAborted();
    return outcome;
  } finally {
    release();
  }
}

const DEFAULT_STOP_TIMEOUT_SECONDS = 120;

interface SchedulerOptions {
  parallel: number;
  threads: number;
  gpus?: number[];
  childModule: string;
  emit: (event: SweepEvent) => void;
  signal?: AbortSignal;
  /** Aborted when the folder's lock was taken over: nothing more is written to the folder. */
  lockLost: AbortSignal;
  stopTimeoutSeconds: number;
}

interface RunningRun {
  info: RunInfo;
  process: RunProcess;
  slot: number;
  done: Promise<void>;
  /** Set once the run was interrupted: kills it if it has not ended in time. */
  killTimer?: NodeJS.Timeout;
}

/** Starts runs as slots free up, chooses each task's point once its tuning runs are done, writes the results. */
class Scheduler {
  /** Every run planned so far, in order (the results' rows). */
  private readonly planned: PlannedRun[];
  private readonly queue: PlannedRun[] = [];
  private readonly running = new Map<PlannedRun, RunningRun>();
  private readonly selections = new Map<SweepTask | undefined, Selection>();
  private readonly failed: string[] = [];
  /** The final numbers of finished runs, read once. */
  private readonly finals = new Map<string, FinalMetrics>();
  /** Set when the sweep stops on an error: the runs it then interrupts have not failed. */
  private stopping = false;
  /** The first error thrown while a run's end was handled, for the loop to rethrow. */
  private endError: { error: unknown } | undefined;

  constructor(
    private readonly plan: SweepPlan,
    private readonly options: SchedulerOptions,
  ) {
    this.planned = plan.initialRuns();
  }

  private info(run: PlannedRun): RunInfo {
    const { name, dir, stage, seed } = run;
    return { name, dir, stage, task: run.task?.name, label: this.plan.label(run.point), seed };
  }

  /** Queues runs, reporting those an earlier sweep finished. */
  private enqueue(runs: PlannedRun[]): void {
    for (const run of runs) {
      if (runStatus(run.dir) === 'finished') this.options.emit({ type: 'skip', run: this.info(run) });
      else this.queue.push(run);
    }
  }

  async run(): Promise<SweepOutcome> {
    const { parallel, threads, signal } = this.options;
    const finished = this.planned.filter((run) => runStatus(run.dir) === 'finished').length;
    this.options.emit({
      type: 'plan',
      dir: this.plan.dir,
      runs: this.planned.length,
      finished,
      parallel,
      threadsPerRun: threads,
    });
    const stop = () => {
      for (const entry of this.running.values()) this.interrupt(entry);
    };
    signal?.addEventListener('abort', stop);
    this.options.lockLost.addEventListener('abort', stop);
    try {
      this.enqueue(this.planned);
      this.selectReadyTasks();
      while (this.queue.length > 0 || this.running.size > 0) {
        while (!this.stopped && this.queue.length > 0 && this.running.size < parallel) {
          await this.start(this.queue.shift() as PlannedRun);
        }
        if (this.running.size === 0) break;
        await Promise.race([...this.running.values()].map((entry) => entry.done));
        this.throwEndError();
        this.selectReadyTasks();
        this.writeResults();
      }
      this.throwEndError();
    } catch (error) {
      // the sweep's lock is released once this returns: no run of it may still be going then
      await this.stopRunning();
      throw error;
    } finally {
      signal?.removeEventListener('abort', stop);
      this.options.lockLost.removeEventListener('abort', stop);
    }
    const results = this.writeResults();
    return { ...results, dir: this.plan.dir, aborted: signal?.aborted === true, failed: this.failed };
  }

  /** Whether the sweep was asked to stop, or its folder is no longer its own. */
  private get stopped(): boolean {
    return this.options.signal?.aborted === true || this.options.lockLost.aborted;
  }

  /** Interrupts every running run and waits for it to end (each keeps its checkpoint for the next sweep). */
  private async stopRunning(): Promise<void> {
    this.stopping = true;
    const entries = [...this.running.values()];
    for (const entry of entries) this.interrupt(entry);
    await Promise.all(entries.map((entry) => entry.done));
  }

  /** Asks a run to stop at its checkpoint, and kills it should it not have ended in time. */
  private interrupt(entry: RunningRun): void {
    if (entry.killTimer) return; // asked already: a second SIGINT would end pace fit at once, not at its checkpoint
    entry.process.interrupt();
    const { stopTimeoutSeconds } = this.options;
    entry.killTimer = setTimeout(() => {
      if (entry.process.kill())
        this.emitFromCallback({ type: 'kill', run: entry.info, afterSeconds: stopTimeoutSeconds });
    }, stopTimeoutSeconds * 1000);
    void entry.done.then(() => clearTimeout(entry.killTimer));
  }

  /**
   * Emits from a timer or a stream's handler, where an exception would end the process with the runs left going:
   * what `onEvent` throws is kept for the loop to rethrow.
   */
  private emitFromCallback(event: SweepEvent): void {
    try {
      this.options.emit(event);
    } catch (error) {
      this.endError ??= { error };
    }
  }

  /** Rethrows what went wrong where a run's end was handled (`done` itself never rejects). */
  private throwEndError(): void {
    if (this.endError) throw this.endError.error;
  }

  private freeSlot(): number {
    const used = new Set([...this.running.values()].map((entry) => entry.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    return slot;
  }

  private async start(run: PlannedRun): Promise<void> {
    const info = this.info(run);
    const checkpoint = await checkpointOf(run.dir);
    // A stop asked for while the checkpoint was read would reach no one: the run is not running yet. It stays queued.
    if (this.stopped) {
      this.queue.unshift(run);
      return;
    }
    const slot = this.freeSlot();
    const started = Date.now();
    const process = launchRun(run, {
      resume: checkpoint.exists ? (checkpoint.from ?? 'last') : false,
      childModule: this.options.childModule,
      env: runEnvironment(globalThis.process.env, { threads: this.options.threads, slot, gpus: this.options.gpus }),
      onLine: (line) => {
        const epoch = EPOCH_LINE.exec(line);
        if (epoch)
          this.emitFromCallback({ type: 'epoch', run: info, epoch: Number(epoch[1]), epochs: run.epochs, line });
      },
    });
    const done = process.exited
      .then((exit) => this.ended(run, info, started, exit))
      .catch((error: unknown) => {
        this.endError ??= { error };
      });
    // running before anything else can throw: an error from here on stops it with the others
    this.running.set(run, { info, process, slot, done });
    this.options.emit({
      type: 'start',
      run: info,
      pid: process.pid,
      ...(checkpoint.exists && { resumedFromEpoch: checkpoint.epochs ?? 0 }),
    });
  }

  /** Records how a run ended: finished (every epoch in its metrics), failed, or interrupted. */
  private ended(
    run: PlannedRun,
    info: RunInfo,
    started: number,
    { code, signal, stderr }: { code: number | null; signal: NodeJS.Signals | null; stderr: string },
  ): void {
    this.running.delete(run);
    if (code === 0) {
      let metrics: FinalMetrics;
      try {
        metrics = markFinished(run.dir, run.name, run.epochs);
      } catch (error) {
        this.fail(run, (error as Error).message);
        return;
      }
      this.finals.set(run.dir, metrics);
      const seconds = (Date.now() - started) / 1000;
      this.options.emit({ type: 'finish', run: info, valAcc: metrics.val_acc, testAcc: metrics.test_acc, seconds });
      return;
    }
    // interrupted: it continues from its checkpoint next time
    if (this.stopping || this.stopped) return;
    const why = signal ? `killed by ${signal}` : `exit code ${code}`;
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    this.fail(
      run,
      `pace fit ended with ${why}${tail ? `: ${tail}` : ''} (see ${path.join(run.dir, SWEEP_RUN_LOG_FILE)})`,
    );
  }

  private fail(run: PlannedRun, message: string): void {
    let reported = message;
    try {
      markFailed(run.dir, message);
    } catch (error) {
      reported = `${message} (and its failed.json could not be written: ${(error as Error).message})`;
    }
    this.failed.push(run.name);
    this.options.emit({ type: 'fail', run: this.info(run), message: reported });
  }

  /** Under `select`: for each task whose tuning runs have all ended, chooses its point and queues its evaluation. */
  private selectReadyTasks(): void {
    if (this.plan.config.protocol !== 'select') return;
    for (const task of this.plan.tasks) {
      if (this.selections.has(task)) continue;
      const tuning = this.planned.filter((run) => run.stage === 'tune' && run.task === task);
      const ended = tuning.every((run) => runStatus(run.dir) === 'finished' || this.failed.includes(run.name));
      if (!ended) continue;
      const rows = readRows(this.plan, tuning, this.finals);
      const selection = selectionOf(taskInfo({ task }), rows);
      this.selections.set(task, selection);
      this.options.emit({ type: 'select', task: task?.name, label: selection.label, valAcc: selection.valAcc });
      if (selection.point === undefined) continue;
      const evaluation = this.plan.evaluationRuns(task, selection.point);
      this.planned.push(...evaluation);
      this.enqueue(evaluation);
    }
  }

  /** Rewrites results.csv and results.md from the run folders. */
  private writeResults(): SweepResults {
    this.options.lockLost.throwIfAborted();
    const rows = readRows(this.plan, this.planned, this.finals);
    const results: SweepResults = {
      protocol: this.plan.config.protocol,
      paths: this.plan.paths,
      seeds: this.plan.config.seeds,
      rows,
      selections: this.plan.tasks.flatMap((task) => this.selections.get(task) ?? []),
      summaries: summarize(rows),
    };
    const csv = resultsCsv(results);
    const markdown = resultsMarkdown(results);
    fs.mkdirSync(this.plan.dir, { recursive: true });
    writeFileAtomic(path.join(this.plan.dir, 'results.csv'), csv);
    writeFileAtomic(path.join(this.plan.dir, 'results.md'), markdown);
    this.options.emit({ type: 'results', csv, markdown });
    return results;
  }
}
