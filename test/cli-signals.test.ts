// The CLI when its output goes away or a signal arrives: `pace fit ... | head -1`, Ctrl-C in a terminal (SIGINT to
// the whole process group), SIGTERM from docker stop or Slurm. Every wait is for something the child does (a line on
// stdout, a process state), bounded; every child is killed in afterAll.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import sharp from 'sharp';

import { createModel, saveTensors, tensor } from '../lib';
import { makeTempDir, repoRoot } from './support/paths';
import { isStopped } from './support/process-state';
import { colourData, tinyVit } from './support/synthetic';

const temp = makeTempDir('cli-signals');
const cli = path.join(repoRoot, 'dist', 'cli.js');
const children: { child: ChildProcess; group: boolean }[] = [];

afterAll(() => {
  for (const { child, group } of children) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
    try {
      process.kill(group ? -child.pid : child.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  temp.cleanup();
});

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout line matching `pattern`; rejects after `seconds` or when the child exits. */
  line(pattern: RegExp, seconds?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A signal the child sends itself right after it prints a line matching `line` (test/support/signal-at-line.js). */
type SignalAt = { line: string; signal: NodeJS.Signals };

/**
 * `pace` with `args` in the temporary folder, killed after `limitSeconds` whatever happens. `group`: in a process group
 * of its own, as a shell starts a command, so the test can signal the group as a terminal's Ctrl-C does. `stdout`: a
 * file descriptor for its standard output instead of a pipe to this test. `signalAt`: a signal at a line of its own.
 */
function startPace(
  args: string[],
  options: { group?: boolean; stdout?: number; limitSeconds?: number; signalAt?: SignalAt } = {},
): Running {
  const preload = options.signalAt ? ['--require', path.join(__dirname, 'support', 'signal-at-line.js')] : [];
  const child = spawn(process.execPath, [...preload, cli, ...args], {
    cwd: temp.dir,
    detached: options.group === true,
    stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'],
    env: options.signalAt
      ? { ...process.env, PACE_TEST_SIGNAL_AT: options.signalAt.line, PACE_TEST_SIGNAL: options.signalAt.signal }
      : process.env,
  });
  children.push({ child, group: options.group === true });
  let stdout = '';
  let stderr = '';
  const lines: string[] = [];
  const waiting = new Set<() => void>();
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  if (child.stdout) {
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      waiting.forEach((check) => check());
    });
  }
  const limit = setTimeout(() => child.kill('SIGKILL'), (options.limitSeconds ?? 90) * 1000);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      waiting.forEach((check) => check());
      resolve({ code, signal });
    }),
  );
  const line = (pattern: RegExp, seconds = 60) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no line ${pattern} within ${seconds} s`))),
        seconds * 1000,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        waiting.delete(check);
        settle();
      };
      const check = () => {
        const found = lines.find((l) => pattern.test(l));
        if (found !== undefined) finish(() => resolve(found));
        else if (child.exitCode !== null || child.signalCode !== null) {
          finish(() => reject(new Error(`exited before a line ${pattern}; stdout: ${stdout}; stderr: ${stderr}`)));
        }
      };
      waiting.add(check);
      check();
    });
  return { child, stdout: () => stdout, stderr: () => stderr, line, exited };
}

/**
 * A write end of a pipe whose reader has already gone (as `| head -1` leaves it once head has exited): a FIFO opened
 * for reading, then for writing, then closed for reading. Every write to it fails with EPIPE.
 */
function closedPipe(name: string): number {
  const fifo = path.join(temp.dir, `${name}.fifo`);
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writer = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.closeSync(reader);
  return writer;
}

/** Runs `pace` with its stdout on a closed pipe, to its end. */
async function paceIntoClosedPipe(name: string, args: string[]) {
  const writer = closedPipe(name);
  const run = startPace(args, { stdout: writer });
  fs.closeSync(writer);
  const { code } = await run.exited;
  return { code, stderr: run.stderr() };
}

async function until(condition: () => boolean, what: string, seconds = 10): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const epochsIn = (runDir: string): number =>
  fs
    .readFileSync(path.join(temp.dir, runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n').length;

const has = (runDir: string, file: string) => fs.existsSync(path.join(temp.dir, runDir, file));

async function writeDataset(file: string, count: number, seed: number): Promise<void> {
  const { images, labels } = colourData(count, seed);
  using imagesTensor = tensor(images, [count, 3, 16, 16]);
  using labelsTensor = tensor(labels);
  await saveTensors(path.join(temp.dir, file), { images: imagesTensor, labels: labelsTensor });
}

/** A run config of the tiny ViT on the colour task; `numClasses` 1000 for the domain-adaptation sets. */
async function writeConfig(file: string, extra: { numClasses?: number; data?: Record<string, unknown> } = {}) {
  const numClasses = extra.numClasses ?? 4;
  const backbone = `backbone-${numClasses}.safetensors`;
  if (!fs.existsSync(path.join(temp.dir, backbone))) {
    using model = await createModel({ ...tinyVit, numClasses }, { seed: 7 });
    await model.saveWeights(path.join(temp.dir, backbone));
  }
  const config = {
    model: { name: { ...tinyVit, numClasses }, numClasses, pretrained: backbone },
    adapters: { type: 'loramul_vptadd', rank: 2 },
    trainer: { optimizer: { lr: 0.01 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 1 },
    data: { train: 'train.safetensors', validation: 'val.safetensors', ...extra.data },
    fit: { epochs: 4, batchSize: 16, evalEvery: 2 },
  };
  fs.writeFileSync(path.join(temp.dir, file), JSON.stringify(config));
}

beforeAll(async () => {
  await writeDataset('train.safetensors', 64, 1);
  await writeDataset('val.safetensors', 32, 2);
  await writeConfig('run.json');
});

describe('output to a closed pipe (pace ... | head -1) is dropped', () => {
  test('pace fit trains to the end: every epoch, the adapters, exit 0, no stack trace', async () => {
    // Bug: the first epoch line's EPIPE was an unhandled 'error' event: a stack trace, exit 1, the run lost.
    const run = await paceIntoClosedPipe('fit', [
      'fit',
      '--config',
      'run.json',
      '--run-dir',
      'piped',
      '--epochs',
      '12',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(epochsIn('piped')).toBe(12);
    expect(has('piped', 'adapters.safetensors')).toBe(true);
  });

  test.each([
    ['report', ['report', 'piped', '--out', 'piped-report.html']],
    ['pull --list', ['pull', '--list']],
    ['--version', ['--version']],
    ['fit --help', ['fit', '--help']],
  ])('pace %s ends quietly', async (name, args) => {
    const run = await paceIntoClosedPipe(name.replace(/\W+/g, '-'), args);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    if (name === 'report') expect(fs.existsSync(path.join(temp.dir, 'piped-report.html'))).toBe(true);
  });
});

describe('stop signals of pace fit', () => {
  test('SIGTERM stops the fit as Ctrl-C does: adapters written, exit 143', async () => {
    // Bug: only SIGINT was handled; SIGTERM (docker stop, Slurm) killed the process with no adapters. The child
    // sends itself the SIGTERM as it prints its epoch 1 line (after that epoch's metrics): it is handled at the
    // child's next turn of its event loop, within the first of epoch 2's 64 steps (batches of 1), which stops at
    // that step; the JavaScript thread would have to be held off for the whole epoch for it to end first.
    const run = startPace(
      ['fit', '--config', 'run.json', '--run-dir', 'terminated', '--epochs', '5000', '--batch-size', '1'],
      { signalAt: { line: '^epoch 1:', signal: 'SIGTERM' } },
    );
    expect(await run.exited).toEqual({ code: 143, signal: null });
    expect(run.stderr()).toBe('');
    const stoppedAt = epochsIn('terminated');
    expect(stoppedAt).toBe(2); // 3 would be a stop at the epoch's end, not at the step in progress
    // When steps of epoch 2 ran before the stop was seen (it may come before its first), the line names them: the
    // adapters hold them, the checkpoint (at epoch 1's end) does not.
    const adapters = path.join('terminated', 'adapters.safetensors').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const ranSteps = `and [1-9]\\d* of epoch ${stoppedAt}'s 64 steps; adapters in ${adapters} \\(with those steps; a resume starts again at epoch ${stoppedAt}\\)`;
    expect(run.stdout()).toMatch(
      new RegExp(`^aborted after ${stoppedAt} epochs(?: ${ranSteps}|; adapters in ${adapters})$`, 'm'),
    );
    expect(has('terminated', 'adapters.safetensors')).toBe(true);
  });

  test('Ctrl-C during the domain-shift evaluation after the fit stops it: exit 130, the adapters kept', async () => {
    // Bug: the fit's SIGINT listener stayed installed through the evaluation and swallowed the Ctrl-C: the
    // evaluation ran on to its end. The evaluation here is four chunks of images; the child freezes itself (SIGSTOP,
    // test/support/signal-at-line.js) as it says training completed, before the evaluation starts, so the Ctrl-C is
    // known to arrive before the evaluation could end, however fast the child runs.
    fs.mkdirSync(path.join(temp.dir, 'shift', 'images'), { recursive: true });
    for (let i = 0; i < 4; i++) {
      await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 60 * i, g: 90, b: 200 - 40 * i } } })
        .png()
        .toFile(path.join(temp.dir, 'shift', 'images', `${i}.png`));
    }
    // A list names each image once: 4000 names, links to the four images.
    for (let n = 4; n < 4000; n++) {
      fs.symlinkSync(`${n % 4}.png`, path.join(temp.dir, 'shift', 'images', `${n}.png`));
    }
    const lines = Array.from({ length: 4000 }, (_, n) => `images/${n}.png ${n % 1000}`);
    fs.writeFileSync(path.join(temp.dir, 'shift', 'val.list'), `${lines.join('\n')}\n`);
    await writeConfig('shift.json', {
      numClasses: 1000,
      data: { domainShift: { imagenet: { list: 'shift/val.list', root: 'shift' } } },
    });
    const run = startPace(['fit', '--config', 'shift.json', '--run-dir', 'shift-run', '--epochs', '2'], {
      signalAt: { line: '^completed after 2 epochs', signal: 'SIGSTOP' },
    });
    await run.line(/^completed after 2 epochs/);
    const pid = run.child.pid!;
    await until(() => isStopped(pid), 'the child to stop');
    expect(has('shift-run', 'domain-shift.json')).toBe(false);
    process.kill(pid, 'SIGINT');
    process.kill(pid, 'SIGCONT');
    expect(await run.exited).toEqual({ code: 130, signal: null });
    expect(run.stderr()).toBe('');
    expect(run.stdout()).toContain('domain-shift evaluation interrupted');
    expect(has('shift-run', 'domain-shift.json')).toBe(false);
    expect(has('shift-run', 'adapters.safetensors')).toBe(true);
    expect(epochsIn('shift-run')).toBe(2);
  });
});

describe('pace launch under a Ctrl-C in its terminal', () => {
  test('SIGINT to the whole process group stops each rank once, cleanly: no failure reported', async () => {
    // Bugs: the ranks shared the launcher's process group, so they got the terminal's SIGINT and then the
    // launcher's; the second killed them (no adapters); and a clean stop was logged as a failed rank.
    const run = startPace(
      [
        'launch',
        '--nproc-per-node',
        '1',
        '--',
        process.execPath,
        cli,
        'fit',
        '--config',
        'run.json',
        '--run-dir',
        'launched',
        '--epochs',
        '5000',
      ],
      { group: true },
    );
    await run.line(/^epoch 1:/);
    process.kill(-run.child.pid!, 'SIGINT');
    expect(await run.exited).toEqual({ code: 130, signal: null });
    expect(run.stderr()).toBe('');
    const stoppedAt = epochsIn('launched');
    expect(run.stdout()).toContain(`aborted after ${stoppedAt} epochs`);
    expect(has('launched', 'adapters.safetensors')).toBe(true);
  });
});
