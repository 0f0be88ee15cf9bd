import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { PaceNotFoundError } from '../errors';
import { writeFileAtomic } from '../files';
import type { PlannedRun } from './plan';
import { SWEEP_RUN_CONFIG_FILE, SWEEP_RUN_LOG_FILE } from '../train/run-folder';

/** A run's `pace fit` process. */
export interface RunProcess {
  pid: number;
  /** Asks the run to stop (SIGINT: fit ends its step, keeps its checkpoint and exits). */
  interrupt(): void;
  /** Ends the run at once (SIGKILL), for one that did not stop when asked (its last checkpoint is kept); false when it had ended. */
  kill(): boolean;
  /** Its exit, with the end of what it wrote to stderr. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** The module each run is forked from: `run-child.js` beside this file, or in dist/ when running from sources. */
export function defaultChildModule(): string {
  const candidates = [
    path.join(__dirname, 'run-child.js'),
    path.resolve(__dirname, '..', '..', 'dist', 'sweep', 'run-child.js'),
  ];
  const found = candidates.find((file) => fs.existsSync(file));
  if (!found) {
    throw new PaceNotFoundError(
      `a sweep forks its runs from ${candidates[0]}, which is not there: build the TypeScript (npm run build:ts)`,
    );
  }
  return found;
}

const KEPT_STDERR = 4000;

/**
 * Starts a run: writes its config (`run.json`) in its folder and forks `pace fit` on it, continuing from the
 * folder's checkpoint when `resume`. Its output is appended to `fit.log` there; stdout lines also go to `onLine`.
 */
export function launchRun(
  run: PlannedRun,
  options: {
    /** Continue from the folder's checkpoint (`last`, or `previous` when the last is unreadable), or start. */
    resume: 'last' | 'previous' | false;
    childModule: string;
    env: NodeJS.ProcessEnv;
    onLine: (line: string) => void;
  },
): RunProcess {
  fs.mkdirSync(run.dir, { recursive: true });
  const config = path.join(run.dir, SWEEP_RUN_CONFIG_FILE);
  writeFileAtomic(config, `${JSON.stringify(run.config, null, 2)}\n`);
  const log = fs.openSync(path.join(run.dir, SWEEP_RUN_LOG_FILE), 'a');
  const args = options.resume
    ? ['--config', config, '--resume', run.dir, '--resume-from', options.resume]
    : ['--config', config, '--run-dir', run.dir];
  fs.writeSync(log, `--- pace fit ${args.join(' ')}\n`);
  // its own process group: a Ctrl-C on the sweep reaches the run once, through the sweep (interrupt)
  const child = fork(options.childModule, args, {
    env: options.env,
    execArgv: [],
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let stderr = '';
  let partial = '';
  // The run's log is a copy of its output: a full disk loses the copy (said once in the run's stderr tail), not the
  // sweep, whose exception from a stream handler would end the process with its runs left going.
  let logLost = false;
  const copyToLog = (chunk: Buffer) => {
    if (logLost) return;
    try {
      fs.writeSync(log, chunk);
    } catch (error) {
      logLost = true;
      stderr += `\n(fit.log could not be written: ${(error as Error).message})`;
    }
  };
  child.stdout?.on('data', (chunk: Buffer) => {
    copyToLog(chunk);
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) options.onLine(line);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    copyToLog(chunk);
    stderr = (stderr + chunk.toString('utf8')).slice(-KEPT_STDERR);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on('error', (error) => {
      stderr += error.message;
    });
    child.on('close', (code, signal) => {
      try {
        if (partial) options.onLine(partial);
        fs.closeSync(log);
      } catch (error) {
        stderr += `\n(fit.log could not be closed: ${(error as Error).message})`;
      } finally {
        resolve({ code, signal, stderr });
      }
    });
  });
  return {
    pid: child.pid ?? -1,
    interrupt: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    },
    kill: () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'),
    exited,
  };
}
