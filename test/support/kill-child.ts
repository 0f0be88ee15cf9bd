import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import { repoRoot } from './paths';

/**
 * When to kill a training child, counted from the training's own progress (never from the clock), so every kill
 * interrupts a run in progress however fast or loaded the machine is.
 * - `step`: right after the child reports its `count`-th step (the kill lands in a later step, or in the
 *   epoch's end and checkpoint when that was the epoch's last step: progress trails the training thread);
 * - `epoch`: right after its `count`-th epoch end (checkpoint and history written), before the next epoch starts;
 *   for these two the child stops itself (SIGSTOP) as it reports the moment, and is killed while stopped;
 * - `checkpoint`: during its `count`-th write of `last.safetensors`: the child is stopped (SIGSTOP) as soon as
 *   the temporary file appears, and killed while stopped; `midWrite` says whether the file was still there,
 *   i.e. whether the kill landed before the rename that completes the write.
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

const checkpointTemp = /^last\.safetensors\.tmp-/;

/** Whether /proc says the process is stopped (state T). */
function isStopped(pid: number): boolean {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
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
  fs.mkdirSync(args.runDir, { recursive: true }); // so the folder can be watched before the child starts
  const stopAt = moment.at === 'checkpoint' ? undefined : moment;
  const child = spawn(process.execPath, [path.join(__dirname, 'fit-child.js'), JSON.stringify({ ...args, stopAt })], {
    env: { ...process.env, PACE_LIB: path.join(repoRoot, 'dist') },
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

  const writes = new Set<string>();
  const watcher = fs.watch(args.runDir, (_event, name) => {
    if (killed || !name || !checkpointTemp.test(name) || writes.has(name)) return;
    writes.add(name);
    if (moment.at !== 'checkpoint' || writes.size !== moment.count || child.pid === undefined) return;
    process.kill(child.pid, 'SIGSTOP');
    for (let waited = 0; !isStopped(child.pid) && waited < 2000; waited++) sleepSync(1);
    outcome.midWrite = fs.existsSync(path.join(args.runDir, name));
    kill();
  });

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
    watcher.close();
  }
  if (timedOut) throw new Error(`no ${moment.at} ${moment.count} from the child within ${timeoutMs} ms`);
  if (!killed) throw new Error(`the child exited before ${moment.at} ${moment.count}: ${outcome.stderr}`);
  return outcome;
}
