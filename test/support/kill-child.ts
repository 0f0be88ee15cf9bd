import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { repoRoot } from './paths';
import { isStopped } from './process-state';

/**
 * When to kill a training child, counted from the training's own progress (never from the clock), so every kill
 * interrupts a run in progress however fast or loaded the machine is.
 * - `step`: right after the child reports its `count`-th step (the kill lands in a later step, or in the
 *   epoch's end and checkpoint when that was the epoch's last step: progress trails the training thread);
 * - `epoch`: right after its `count`-th epoch end (checkpoint and history written), before the next epoch starts;
 *   for these two the child stops itself (SIGSTOP) as it reports the moment, and is killed while stopped;
 * - `checkpoint`: inside its `count`-th write of `last.safetensors`, after the temporary file is written and
 *   synced, before the rename that completes the write: the child stops itself there (SIGSTOP, from a `rename`
 *   preloaded by `stop-at-rename.c`) and is killed while stopped; `midWrite` says the temporary file was there.
 */
export type KillMoment = { at: 'step' | 'epoch' | 'checkpoint'; count: number };

export interface KillOutcome {
  moment: KillMoment;
  steps: number;
  epochs: number;
  midWrite: boolean;
  /** The child finished training before the kill: the kill did not interrupt a run. */
  finished: boolean;
  signal: NodeJS.Signals | null;
  stderr: string;
}

let stopAtRename: string | undefined;

/** `stop-at-rename.c` built into a shared library (once per test process), to preload into a child. */
function stopAtRenameLibrary(): string {
  if (stopAtRename) return stopAtRename;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-stop-at-rename-'));
  const library = path.join(dir, 'stop-at-rename.so');
  const source = path.join(__dirname, 'stop-at-rename.c');
  const built = spawnSync(process.env.CC || 'cc', ['-shared', '-fPIC', '-O2', '-o', library, source, '-ldl'], {
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error(`cannot build ${source}: ${built.error ?? built.stderr}`);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  stopAtRename = library;
  return library;
}

/**
 * Runs `test/support/fit-child.js` with `args` (its run folder is `args.runDir`) and kills it with SIGKILL at
 * `moment`. Rejects if the moment has not come after `timeoutMs` (the child is killed then too).
 */
export async function runFitChildUntil(
  args: { runDir: string } & Record<string, unknown>,
  moment: KillMoment,
  timeoutMs = 120_000,
): Promise<KillOutcome> {
  fs.mkdirSync(args.runDir, { recursive: true }); // so the folder can be listed before the child makes it
  const atCheckpoint = moment.at === 'checkpoint';
  const stopAt = atCheckpoint ? undefined : moment;
  const stopsAtRename = atCheckpoint && {
    LD_PRELOAD: stopAtRenameLibrary(),
    PACE_TEST_STOP_AT_RENAME: `last.safetensors:${moment.count}`,
  };
  const child = spawn(process.execPath, [path.join(__dirname, 'fit-child.js'), JSON.stringify({ ...args, stopAt })], {
    env: { ...process.env, PACE_LIB: path.join(repoRoot, 'dist'), ...stopsAtRename },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const outcome: KillOutcome = {
    moment,
    steps: 0,
    epochs: 0,
    midWrite: false,
    finished: false,
    signal: null,
    stderr: '',
  };
  child.stderr.on('data', (chunk) => (outcome.stderr += chunk));
  let killed = false;
  const kill = () => {
    if (!killed) child.kill('SIGKILL');
    killed = true;
  };

  // The child stops itself before the rename: seen here, it is killed with the write's temporary file in place.
  const watcher =
    atCheckpoint &&
    setInterval(() => {
      if (killed || child.pid === undefined || !isStopped(child.pid)) return;
      const own = `last.safetensors.tmp-${child.pid}-`; // not one an earlier child killed mid-write left
      outcome.midWrite = fs.readdirSync(args.runDir).some((name) => name.startsWith(own));
      kill();
    }, 5);

  const lines = readline.createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (killed) return; // lines already on their way when the kill was sent
    const [event] = line.split(' ');
    if (event === 'finished') outcome.finished = true;
    if (event === 'step') outcome.steps += 1;
    if (event === 'epoch') outcome.epochs += 1;
    if (event === moment.at && (event === 'step' ? outcome.steps : outcome.epochs) === moment.count) kill();
  });

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  try {
    outcome.signal = await new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('close', (_code, signal) => resolve(signal)),
    );
  } finally {
    clearTimeout(timer);
    if (watcher) clearInterval(watcher);
  }
  if (timedOut) throw new Error(`no ${moment.at} ${moment.count} from the child within ${timeoutMs} ms`);
  if (!killed) throw new Error(`the child exited before ${moment.at} ${moment.count}: ${outcome.stderr}`);
  return outcome;
}
