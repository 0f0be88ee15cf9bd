import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import { PaceBusyError, PaceStateError, sweep, type SweepEvent } from '../lib';
import { processAlive } from '../lib/process-alive';
import { demoVit, writeDigits } from './support/digits';
import { makeTempDir, repoRoot } from './support/paths';
import { stoppedWithin } from './support/process-state';

const temp = makeTempDir('sweep');
afterAll(() => temp.cleanup());

const cli = path.join(repoRoot, 'dist', 'cli.js');
const weights = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const EPOCHS = 8;

const base = {
  model: { name: demoVit, numClasses: 10, pretrained: weights },
  adapters: { rank: 4 },
  trainer: { optimizer: { lr: 0.01 } },
  data: { train: 'train.safetensors', test: 'test.safetensors' },
  fit: { epochs: EPOCHS, batchSize: 8, evalEvery: EPOCHS, schedule: false },
};

const sweepConfig = {
  base,
  grid: { 'trainer.pace.sigma': [0.5, 1], 'trainer.pace.lambda': [0.5, 2] },
  seeds: [0, 1],
  dir: 'digits-sweep',
};

beforeAll(async () => {
  await writeDigits(path.join(temp.dir, 'train.safetensors'), 16, 0);
  await writeDigits(path.join(temp.dir, 'tune-train.safetensors'), 8, 0);
  await writeDigits(path.join(temp.dir, 'val.safetensors'), 10, 40);
  await writeDigits(path.join(temp.dir, 'test.safetensors'), 20, 100);
  fs.writeFileSync(path.join(temp.dir, 'sweep.json'), JSON.stringify(sweepConfig));
});

const metricLines = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
const lastTestAcc = (dir: string) => JSON.parse(metricLines(dir).at(-1) as string).test_acc as number;

/** Every file of a folder with its modification time and content hash. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(dir)
      .sort()
      .map((name) => {
        const file = path.join(dir, name);
        const hash = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
        return [name, `${fs.statSync(file).mtimeMs} ${hash}`];
      }),
  );
}

/** Runs `pace sweep` with `args` (and `env` beside the test's); `onLine` sees each stdout line with its pid. */
async function paceSweep(
  args: string[],
  onLine: (line: string, sweepPid: number) => void = () => {},
  env: NodeJS.ProcessEnv = {},
) {
  const child = spawn(process.execPath, [cli, 'sweep', ...args], {
    cwd: temp.dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const lines: string[] = [];
  child.stderr.on('data', (chunk) => (stderr += chunk));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    onLine(line, child.pid as number);
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  return { code, signal, stderr, lines };
}

/**
 * The environment under which the n-th process of a sweep's tree to write an `epoch 1: ` line stops itself there
 * (SIGSTOP): signal-at-line.js preloaded through NODE_OPTIONS, the lines counted in a folder of their own.
 */
function stopNthRunAtEpoch1(nth: number) {
  return {
    NODE_OPTIONS: [
      process.env.NODE_OPTIONS,
      `--require ${JSON.stringify(path.join(__dirname, 'support', 'signal-at-line.js'))}`,
    ]
      .filter(Boolean)
      .join(' '),
    PACE_TEST_SIGNAL_AT: '^epoch 1: ',
    PACE_TEST_SIGNAL: 'SIGSTOP',
    PACE_TEST_SIGNAL_COUNT_DIR: fs.mkdtempSync(path.join(temp.dir, 'epoch-1-lines-')),
    PACE_TEST_SIGNAL_NTH: String(nth),
  };
}

test('a 2-σ × 2-λ × 2-seed sweep on the digits is killed mid-way, resumed without redoing finished runs, and its table equals its run folders', async () => {
  const dir = path.join(temp.dir, 'digits-sweep');
  // 1. run until two runs have finished and the third has checkpointed an epoch, then kill the sweep. The third
  // run stops itself (SIGSTOP) as it reports its epoch 1 (signal-at-line.js, preloaded into the sweep's processes
  // through NODE_OPTIONS), so it cannot train on to its end while the line travels through the sweep to here.
  const finished: string[] = [];
  const pids = new Map<string, number>();
  let victim: { name: string; pid: number } | undefined;
  const stopThirdRun = stopNthRunAtEpoch1(3);
  const counted = stopThirdRun.PACE_TEST_SIGNAL_COUNT_DIR;
  const killSweepOnce = async (sweepPid: number, pid: number) => {
    const held = await stoppedWithin(pid);
    process.kill(sweepPid, 'SIGKILL');
    process.kill(pid, 'SIGCONT'); // it finds its sweep gone and dies (run-child's watchdog)
    return held;
  };
  let killing: Promise<boolean> | undefined;
  const first = await paceSweep(
    ['--config', 'sweep.json', '--verbose'],
    (line, sweepPid) => {
      const start = /^start (\S+) \(pid (\d+)\)/.exec(line);
      if (start) pids.set(start[1], Number(start[2]));
      const finish = /^finish (\S+)/.exec(line);
      if (finish) finished.push(finish[1]);
      const epoch = /^(\S+): epoch 1: /.exec(line);
      if (epoch && finished.length >= 2 && !finished.includes(epoch[1]) && !victim) {
        victim = { name: epoch[1], pid: pids.get(epoch[1]) as number };
        killing = killSweepOnce(sweepPid, victim.pid);
      }
    },
    stopThirdRun,
  );
  expect(await killing).toBe(true); // the run was held at its epoch 1 when its sweep was killed
  expect(fs.readdirSync(counted)).toHaveLength(3); // the three runs' epoch 1 lines, none of the sweep's own
  expect(first.signal).toBe('SIGKILL');
  expect(victim).toBeDefined();
  const killed = victim as { name: string; pid: number };
  for (let waited = 0; processAlive(killed.pid) && waited < 200; waited++) await new Promise((r) => setTimeout(r, 25));
  expect(processAlive(killed.pid)).toBe(false);

  expect(finished).toHaveLength(2);
  const killedDir = path.join(dir, killed.name);
  expect(fs.existsSync(path.join(killedDir, 'finished.json'))).toBe(false);
  expect(fs.existsSync(path.join(killedDir, 'last.safetensors'))).toBe(true);
  const before = metricLines(killedDir);
  expect(before.length).toBeGreaterThanOrEqual(2);
  expect(before.length).toBeLessThan(EPOCHS);
  const untouched = Object.fromEntries(finished.map((name) => [name, snapshot(path.join(dir, name))]));

  // 2. the same command again (two at a time now: scheduling may change, the runs may not)
  const second = await paceSweep(['--config', 'sweep.json', '--verbose', '--parallel', '2']);
  expect(second.stderr).toBe('');
  expect(second.code).toBe(0);
  expect(second.lines[0]).toMatch(/8 run\(s\) planned, 2 finished already; 2 at a time, \d+ thread\(s\) each/);
  const skipped = second.lines.flatMap((line) => /^skip (\S+) \(finished\)$/.exec(line)?.[1] ?? []);
  expect(skipped.sort()).toEqual([...finished].sort());
  const started = second.lines.flatMap((line) => /^start (\S+) /.exec(line)?.[1] ?? []);
  expect(started).toHaveLength(6);
  expect(started).not.toEqual(expect.arrayContaining([finished[0]]));
  expect(started).not.toEqual(expect.arrayContaining([finished[1]]));
  const resumed = second.lines
    .map((line) =>
      new RegExp(`^start ${killed.name.replace(/[.+]/g, '\\$&')} \\(pid \\d+\\) resumed from epoch (\\d+)$`).exec(line),
    )
    .find((match) => match !== null);
  expect(resumed).toBeDefined();
  expect(Number(resumed?.[1])).toBeGreaterThanOrEqual(before.length);
  expect(second.lines.filter((line) => line.includes('resumed from epoch'))).toHaveLength(1);
  // the killed run continued from its checkpoint: its first epochs are the ones it had, its log shows the resume
  expect(metricLines(killedDir).slice(0, before.length)).toEqual(before);
  const log = fs.readFileSync(path.join(killedDir, 'fit.log'), 'utf8');
  expect(log.match(/^--- pace fit .*--run-dir/gm)).toHaveLength(1);
  expect(log.match(/^--- pace fit .*--resume/gm)).toHaveLength(1);
  for (const name of finished) expect(snapshot(path.join(dir, name))).toEqual(untouched[name]);

  // 3. every run complete, named from its settings; the table's numbers are the run folders'
  const names = [0.5, 1].flatMap((sigma) =>
    [0.5, 2].flatMap((lambda) => [0, 1].map((seed) => `sigma=${sigma}_lambda=${lambda}_seed=${seed}`)),
  );
  for (const name of names) {
    expect(fs.existsSync(path.join(dir, name, 'finished.json'))).toBe(true);
    expect(metricLines(path.join(dir, name))).toHaveLength(EPOCHS);
  }
  const csv = fs.readFileSync(path.join(dir, 'results.csv'), 'utf8').trim().split('\n');
  expect(csv[0]).toBe(
    'stage,task,group,shots,trainer.pace.sigma,trainer.pace.lambda,seed,run,status,epochs,val_acc,test_acc',
  );
  expect(csv.slice(1).map((line) => line.split(',')[7])).toEqual(names);
  for (const line of csv.slice(1)) {
    const cells = line.split(',');
    expect(Number(cells[11])).toBe(lastTestAcc(path.join(dir, cells[7])));
  }
  const markdown = fs.readFileSync(path.join(dir, 'results.md'), 'utf8');
  for (const sigma of [0.5, 1]) {
    for (const lambda of [0.5, 2]) {
      const values = [0, 1].map((seed) => lastTestAcc(path.join(dir, `sigma=${sigma}_lambda=${lambda}_seed=${seed}`)));
      const mean = (values[0] + values[1]) / 2;
      const std = Math.abs(values[0] - values[1]) / 2; // population std of two values
      const cell = `${(100 * mean).toFixed(2)} ± ${(100 * std).toFixed(2)}`;
      expect(markdown).toContain(`| — | σ ${sigma}, λ ${lambda} | ${cell} | 2 | test_acc |`);
    }
  }
  expect(markdown).not.toContain('Not finished');

  // 4. pace report reads the sweep folder as a sweep of 8 runs
  const report = spawnSync(process.execPath, [cli, 'report', 'digits-sweep', '--out', 'sweep.html'], {
    cwd: temp.dir,
    encoding: 'utf8',
  });
  expect(report.status).toBe(0);
  expect(report.stdout).toContain('report of 8 run(s)');
  expect(fs.readFileSync(path.join(temp.dir, 'sweep.html'), 'utf8')).toContain('σ');

  // 5. another config for the same folder is refused, naming what changed; a live sweep's folder is busy
  fs.writeFileSync(
    path.join(temp.dir, 'changed.json'),
    JSON.stringify({ ...sweepConfig, grid: { ...sweepConfig.grid, 'trainer.pace.lambda': [0.5, 3] } }),
  );
  const changed = await paceSweep(['--config', 'changed.json']);
  expect(changed.code).toBe(1);
  expect(changed.stderr).toContain('holds a sweep of another config (it differs at grid.trainer.pace.lambda[1])');
  await expect(sweep(sweepConfig, { baseDir: temp.dir, childModule: 'none' })).resolves.toMatchObject({
    failed: [],
    aborted: false,
  });
  fs.writeFileSync(path.join(dir, 'sweep.lock'), `${process.ppid}\n`);
  await expect(sweep(sweepConfig, { baseDir: temp.dir })).rejects.toThrow(PaceBusyError);
  fs.rmSync(path.join(dir, 'sweep.lock'));
  await expect(sweep({ ...sweepConfig, seeds: [0, 1, 2] }, { baseDir: temp.dir })).rejects.toThrow(PaceStateError);
});

test("the paper's protocol: each point tuned on the tuning split, the best by validation accuracy re-run with every seed on the evaluation split", async () => {
  const events: SweepEvent[] = [];
  const outcome = await sweep(
    {
      base: { ...base, fit: { ...base.fit, epochs: 4, evalEvery: 4 } },
      tasks: [
        {
          name: 'digits',
          tune: { train: 'tune-train.safetensors', validation: 'val.safetensors' },
          evaluate: { train: 'train.safetensors', test: 'test.safetensors' },
        },
      ],
      grid: { 'trainer.optimizer.lr': [0, 0.01] },
      seeds: [3, 4],
      dir: 'protocol-sweep',
    },
    { baseDir: temp.dir, parallel: 2, onEvent: (event) => events.push(event) },
  );
  const dir = path.join(temp.dir, 'protocol-sweep');
  expect(outcome).toMatchObject({ protocol: 'select', aborted: false, failed: [] });
  expect(events[0]).toMatchObject({ type: 'plan', runs: 2, finished: 0, parallel: 2 });

  // selection, computed here from the tuning runs' metrics: the higher final validation accuracy (first on ties)
  const valAcc = (name: string) => JSON.parse(metricLines(path.join(dir, name)).at(-1) as string).val_acc as number;
  const tuned = [valAcc('tune_digits_lr=0_seed=3'), valAcc('tune_digits_lr=0.01_seed=3')];
  const chosen = tuned[1] > tuned[0] ? '0.01' : '0';
  const selection = events.find((event) => event.type === 'select');
  expect(selection).toEqual({
    type: 'select',
    task: 'digits',
    label: `lr ${chosen}`,
    valAcc: Math.max(...tuned),
  });
  // the chosen point ran with both seeds on the evaluation split, after both tuning runs
  const order = events.flatMap((event) =>
    event.type === 'finish' || event.type === 'start' ? [`${event.type} ${event.run.name}`] : [],
  );
  const evaluation = [3, 4].map((seed) => `eval_digits_lr=${chosen}_seed=${seed}`);
  for (const name of evaluation) {
    expect(order.indexOf(`start ${name}`)).toBeGreaterThan(order.indexOf('finish tune_digits_lr=0_seed=3'));
    expect(order.indexOf(`start ${name}`)).toBeGreaterThan(order.indexOf('finish tune_digits_lr=0.01_seed=3'));
    const config = JSON.parse(fs.readFileSync(path.join(dir, name, 'run.json'), 'utf8'));
    expect(config.data).toEqual({
      train: path.join(temp.dir, 'train.safetensors'),
      test: path.join(temp.dir, 'test.safetensors'),
    });
  }
  expect(
    fs
      .readdirSync(dir)
      .filter((name) => name.startsWith('eval_'))
      .sort(),
  ).toEqual(evaluation);
  const tests = evaluation.map((name) => lastTestAcc(path.join(dir, name)));
  const mean = (tests[0] + tests[1]) / 2;
  const std = Math.abs(tests[0] - tests[1]) / 2;
  const markdown = fs.readFileSync(path.join(dir, 'results.md'), 'utf8');
  expect(markdown).toContain(`| digits | lr ${chosen} | ${(100 * Math.max(...tuned)).toFixed(2)} | 2 (2) |`);
  expect(markdown).toContain(
    `| digits | lr ${chosen} | ${(100 * mean).toFixed(2)} ± ${(100 * std).toFixed(2)} | 2 | test_acc |`,
  );
  expect(outcome.summaries).toEqual([
    expect.objectContaining({ label: `lr ${chosen}`, values: tests, seeds: [3, 4], mean, n: 2 }),
  ]);
});

test('an aborted sweep interrupts its run at a checkpoint; the next sweep of the folder finishes it from there', async () => {
  const config = { base, grid: { 'trainer.pace.sigma': [0.5] }, dir: 'aborted-sweep' };
  const controller = new AbortController();
  // The run stops itself (SIGSTOP) as it writes its epoch 1 line (given to the runs through the environment a
  // sweep passes on): without that it could train its last six epochs, a fraction of a second, while the line
  // travels to here and the abort back.
  const stopAtEpoch1 = stopNthRunAtEpoch1(1);
  const saved = Object.fromEntries(Object.keys(stopAtEpoch1).map((name) => [name, process.env[name]]));
  Object.assign(process.env, stopAtEpoch1);
  let runPid = -1;
  let aborting: Promise<boolean> | undefined;
  const abortWhileHeld = async () => {
    const held = await stoppedWithin(runPid);
    controller.abort(); // the run's SIGINT waits while it is stopped
    try {
      process.kill(runPid, 'SIGCONT');
    } catch {
      // the run has already ended
    }
    return held;
  };
  let first;
  try {
    first = await sweep(config, {
      baseDir: temp.dir,
      signal: controller.signal,
      onEvent: (event) => {
        if (event.type === 'start') runPid = event.pid;
        if (event.type === 'epoch' && event.epoch === 1 && !aborting) {
          aborting = abortWhileHeld();
          aborting.catch(() => undefined); // awaited below; never an unhandled rejection if the sweep throws
        }
      },
    });
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  expect(await aborting).toBe(true); // the run was held at its epoch 1 when the sweep was aborted
  const run = path.join(temp.dir, 'aborted-sweep', 'sigma=0.5_seed=0');
  expect(first).toMatchObject({ aborted: true, failed: [] });
  expect(first.rows).toEqual([expect.objectContaining({ status: 'unfinished' })]);
  expect(fs.existsSync(path.join(run, 'finished.json'))).toBe(false);
  const before = metricLines(run);
  expect(before.length).toBeLessThan(EPOCHS);

  const events: SweepEvent[] = [];
  const second = await sweep(config, { baseDir: temp.dir, onEvent: (event) => events.push(event) });
  expect(second).toMatchObject({ aborted: false, failed: [] });
  expect(events.find((event) => event.type === 'start')).toMatchObject({ resumedFromEpoch: before.length });
  expect(metricLines(run).slice(0, before.length)).toEqual(before);
  expect(second.summaries[0].values).toEqual([lastTestAcc(run)]);
});

test("a base config whose fit names a resume, or a grid over fit's invocation options, is refused before anything runs", () => {
  // Bug: the base was checked against Trainer.fit's options, which take runDir, resume, resumeFrom and progress: a
  // base's fit.resume had every run of the sweep continue (and rewrite) that other run's folder.
  const refused = (name: string, config: Record<string, unknown>) => {
    fs.writeFileSync(path.join(temp.dir, name), JSON.stringify({ ...config, dir: `${name}-dir` }));
    const run = spawnSync(process.execPath, [cli, 'sweep', '--config', name], {
      cwd: temp.dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(fs.existsSync(path.join(temp.dir, `${name}-dir`))).toBe(false);
    return run;
  };
  const resumeBase = refused('resume-base.json', {
    ...sweepConfig,
    base: { ...base, fit: { ...base.fit, resume: 'x' } },
  });
  expect(resumeBase.stderr).toContain(`sweep config 'resume-base.json'.base.fit.resume: not a config setting`);
  expect(resumeBase.status).toBe(1);
  const progressGrid = refused('progress-grid.json', { ...sweepConfig, grid: { 'fit.progress': [true, false] } });
  expect(progressGrid.stderr).toContain(`'fit.progress' cannot be swept`);
  expect(progressGrid.status).toBe(1);
});
