import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { PaceBusyError, readRuns, settingGrids, sweep, type SweepEvent } from '../lib';
import { processAlive } from '../lib/process-alive';
import { labelRuns } from '../lib/report/labels';
import { takeLock } from '../lib/folder-lock';
import { openSweepFolder } from '../lib/sweep/folder';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('sweep-robustness');
afterAll(() => temp.cleanup());

/**
 * A stand-in for `pace fit` (these tests are about the sweep around it): it reads its run.json, writes config.json
 * and one epoch to metrics.jsonl (val_acc with validation data, test_acc with a test set), after 10 s for runs
 * named in STAND_IN_SLOW, and exits 1 for runs named in STAND_IN_FAIL. SIGINT leaves `interrupted` behind, exit 130,
 * except in runs named in STAND_IN_DEAF, which ignore it.
 * With STAND_IN_SLOW set, the other runs start their work only once a slow run has its SIGINT handler (its
 * `slow-ready` file beside the run folders): an interrupt from the sweep then always finds the handler.
 */
const standIn = path.join(temp.dir, 'stand-in-fit.js');
fs.writeFileSync(
  standIn,
  `const fs = require('fs'); const path = require('path');
const args = process.argv.slice(2);
const dir = args[args.indexOf(args.includes('--run-dir') ? '--run-dir' : '--resume') + 1];
const name = path.basename(dir);
const named = (list) => (list ?? '').split(',').some((part) => part && name.includes(part));
process.on('SIGINT', () => {
  if (named(process.env.STAND_IN_DEAF)) return;
  fs.writeFileSync(path.join(dir, 'interrupted'), ''); process.exit(130);
});
const slowReady = path.join(dir, '..', 'slow-ready');
if (named(process.env.STAND_IN_SLOW)) fs.writeFileSync(slowReady, '');
const afterSlowIsReady = (work) =>
  !process.env.STAND_IN_SLOW || fs.existsSync(slowReady) ? work() : setTimeout(() => afterSlowIsReady(work), 10);
const config = JSON.parse(fs.readFileSync(args[args.indexOf('--config') + 1], 'utf8'));
const { sigma = 0, lambda = 0 } = config.trainer.pace ?? {};
const accuracy = 0.5 + sigma / 10 + lambda / 100 + config.trainer.seed / 1000 + (config.data.train.includes('beta') ? 0.2 : 0);
afterSlowIsReady(() => setTimeout(() => {
  if (named(process.env.STAND_IN_FAIL)) process.exit(1);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ trainer: config.trainer, data: { trainSamples: 800 } }));
  const epoch = { epoch: 0, ...(config.data.validation && { val_acc: accuracy }), ...(config.data.test && { test_acc: accuracy }) };
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), JSON.stringify(epoch) + '\\n');
  process.exit(0);
}, named(process.env.STAND_IN_SLOW) ? 10000 : 50));
`,
);

const base = {
  model: { name: 'vit_tiny_patch16_224', numClasses: 10 },
  trainer: { optimizer: { lr: 0.001 } },
  data: { train: 'train.safetensors', test: 'test.safetensors' },
  fit: { epochs: 1, batchSize: 4 },
};

afterEach(() => {
  delete process.env.STAND_IN_SLOW;
  delete process.env.STAND_IN_FAIL;
  delete process.env.STAND_IN_DEAF;
});

describe('a sweep that meets an error', () => {
  test('stops its running runs and waits for them before it throws and releases its lock', async () => {
    // Bug: sweep() released sweep.lock while the other runs kept going (and later wrote finished.json).
    const dir = path.join(temp.dir, 'error-in-loop');
    fs.mkdirSync(path.join(dir, 'results.md', 'in-the-way'), { recursive: true }); // writing results.md fails
    process.env.STAND_IN_SLOW = 'sigma=1_';
    const started: number[] = [];
    const config = { base, grid: { 'trainer.pace.sigma': [0.5, 1] }, dir };
    const outcome = sweep(config, {
      baseDir: temp.dir,
      childModule: standIn,
      parallel: 2,
      onEvent: (event) => {
        if (event.type === 'start') started.push(event.pid);
      },
    });
    try {
      await expect(outcome).rejects.toThrow(/results\.md/);
      const slow = path.join(dir, 'sigma=1_seed=0');
      expect(fs.existsSync(path.join(slow, 'interrupted'))).toBe(true);
      expect(started.filter(processAlive)).toEqual([]);
      expect(fs.existsSync(path.join(dir, 'sweep.lock'))).toBe(false);
      // interrupted by the sweep, not failed: the next sweep continues it
      expect(
        fs
          .readdirSync(slow)
          .filter((name) => name.endsWith('.json'))
          .sort(),
      ).toEqual(['run.json']);
    } finally {
      for (const pid of started.filter(processAlive)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a run whose failed.json cannot be written is still reported failed, and the others go on', async () => {
    // Bug: markFailed's error rejected the run's promise, which ended the sweep with its other runs running.
    const dir = path.join(temp.dir, 'unwritable-failure');
    fs.mkdirSync(path.join(dir, 'sigma=2_seed=0', 'failed.json', 'in-the-way'), { recursive: true });
    process.env.STAND_IN_FAIL = 'sigma=2_';
    const events: SweepEvent[] = [];
    const config = { base, grid: { 'trainer.pace.sigma': [0.5, 2] }, dir };
    const outcome = await sweep(config, { baseDir: temp.dir, childModule: standIn, onEvent: (e) => events.push(e) });
    expect(outcome.failed).toEqual(['sigma=2_seed=0']);
    expect(outcome.rows.map((row) => row.status)).toEqual(['finished', 'failed']);
    const fail = events.find((event) => event.type === 'fail');
    expect(fail).toMatchObject({ run: { name: 'sigma=2_seed=0' } });
    expect((fail as { message: string }).message).toMatch(
      /^pace fit ended with exit code 1 .* \(and its failed\.json could not be written: .*EISDIR/,
    );
  });

  test("a finished run's numbers come from its finished.json; unreadable ones are its row's problem, not the sweep's", async () => {
    // Bug: a damaged metrics.jsonl of a run finished earlier threw out of every later sweep of the folder.
    const dir = path.join(temp.dir, 'damaged');
    const config = { base, grid: { 'trainer.pace.sigma': [0.5, 1] }, dir };
    const first = await sweep(config, { baseDir: temp.dir, childModule: standIn });
    expect(first.summaries.map((s) => s.mean)).toEqual([0.55, 0.6]);
    const damaged = path.join(dir, 'sigma=0.5_seed=0');
    fs.writeFileSync(path.join(damaged, 'metrics.jsonl'), '{"epoch":0,"test_acc":0.5');
    const second = await sweep(config, { baseDir: temp.dir, childModule: standIn });
    expect(second.summaries.map((s) => s.mean)).toEqual([0.55, 0.6]);

    fs.writeFileSync(path.join(damaged, 'finished.json'), '{"run": "sigma=0.5_seed=0", "epochs": 1, "test_');
    const third = await sweep(config, { baseDir: temp.dir, childModule: standIn });
    expect(third.rows[0]).toMatchObject({ status: 'finished', metrics: { epochs: 0 } });
    expect(third.rows[0].problem).toMatch(/finished\.json: not readable JSON/);
    expect(third.summaries.map((s) => [s.label, s.mean])).toEqual([['σ 1', 0.6]]);
    const markdown = fs.readFileSync(path.join(dir, 'results.md'), 'utf8');
    expect(markdown).toContain('| — | σ 1 | 60.00 | 1 | test_acc |');
    expect(markdown).not.toContain('| — | σ 0.5 |');
    expect(markdown).toContain(`- sigma=0.5_seed=0: ${path.join(damaged, 'finished.json')}: not readable JSON`);
    const csv = fs.readFileSync(path.join(dir, 'results.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('stage,task,group,shots,trainer.pace.sigma,seed,run,status,epochs,val_acc,test_acc,problem');
    expect(csv[1]).toMatch(/^grid,,,,0\.5,0,sigma=0\.5_seed=0,finished,0,,,"?\/.*finished\.json: not readable JSON/);
    expect(csv[2]).toBe('grid,,,,1,0,sigma=1_seed=0,finished,1,,0.6,');
  });
});

describe('a stopped sweep', () => {
  test('a stop that comes while a run is being started (its checkpoint read) leaves it unstarted', async () => {
    // Bug: the run whose checkpoint was being read when Ctrl-C came was launched after it, never interrupted, and
    // the sweep waited for it to train to its end. The signal here turns aborted between the loop's check and the
    // start, the window a real Ctrl-C can fall into while the header is read.
    const dir = path.join(temp.dir, 'stopped-while-starting');
    let planned = false;
    let readsSincePlan = 0;
    const signal = {
      get aborted() {
        return planned && readsSincePlan++ > 0;
      },
      addEventListener: () => undefined,
      removeEventListener: () => undefined,
    } as unknown as AbortSignal;
    const events: SweepEvent[] = [];
    const outcome = await sweep(
      { base, grid: { 'trainer.pace.sigma': [1] }, dir },
      {
        baseDir: temp.dir,
        childModule: standIn,
        signal,
        onEvent: (event) => {
          events.push(event);
          if (event.type === 'plan') planned = true;
        },
      },
    );
    expect(outcome.aborted).toBe(true);
    expect(events.map((e) => e.type)).not.toContain('start');
    expect(fs.existsSync(path.join(dir, 'sigma=1_seed=0', 'metrics.jsonl'))).toBe(false);
  });

  test('kills a run that has not ended stopTimeoutSeconds after its interrupt, keeping it unfailed', async () => {
    // Bug: the sweep waited for an interrupted run however long it took; one stuck in a step (here: deaf to
    // SIGINT, finishing after 10 s) kept the sweep from ending.
    const dir = path.join(temp.dir, 'deaf-run');
    process.env.STAND_IN_SLOW = 'sigma=1_';
    process.env.STAND_IN_DEAF = 'sigma=1_';
    const controller = new AbortController();
    const events: SweepEvent[] = [];
    const started = Date.now();
    const outcome = await sweep(
      { base, grid: { 'trainer.pace.sigma': [1] }, dir },
      {
        baseDir: temp.dir,
        childModule: standIn,
        signal: controller.signal,
        stopTimeoutSeconds: 0.5,
        onEvent: (event) => {
          events.push(event);
          if (event.type !== 'start') return;
          const ready = path.join(dir, 'slow-ready');
          const abortWhenReady = () => (fs.existsSync(ready) ? controller.abort() : setTimeout(abortWhenReady, 10));
          abortWhenReady();
        },
      },
    );
    expect(Date.now() - started).toBeLessThan(8000); // the run's own end comes after 10 s
    expect(outcome.aborted).toBe(true);
    expect(outcome.failed).toEqual([]);
    expect(events.filter((e) => e.type === 'kill')).toEqual([
      { type: 'kill', run: expect.objectContaining({ name: 'sigma=1_seed=0' }), afterSeconds: 0.5 },
    ]);
    const pid = (events.find((e) => e.type === 'start') as Extract<SweepEvent, { type: 'start' }>).pid;
    expect(processAlive(pid)).toBe(false);
    expect(fs.readdirSync(path.join(dir, 'sigma=1_seed=0')).sort()).toEqual(['fit.log', 'run.json']);
  });

  test('whose lock another host took over while it was suspended stops its runs and writes nothing more', async () => {
    // Bug: the heartbeat went on touching the lock, now another sweep's, and both sweeps ran in the folder,
    // each rewriting results.csv and results.md. Here the lock is rewritten as another host's, as one that took
    // it over (after 120 s untouched) would leave it.
    const dir = path.join(temp.dir, 'lock-taken-over');
    process.env.STAND_IN_SLOW = 'sigma=1_';
    const lock = path.join(dir, 'sweep.lock');
    const other = `${JSON.stringify({ pid: 4242, hostname: 'elsewhere.example' })}\n`;
    const events: SweepEvent[] = [];
    const outcome = sweep(
      { base, grid: { 'trainer.pace.sigma': [0.5, 1] }, dir },
      {
        baseDir: temp.dir,
        childModule: standIn,
        parallel: 2,
        lockTiming: { heartbeatSeconds: 0.05, staleSeconds: 120 },
        onEvent: (event) => {
          events.push(event);
          // taken over once the quick run's results are written, while the slow one runs
          if (event.type === 'results' && !fs.readFileSync(lock, 'utf8').includes('4242'))
            fs.writeFileSync(lock, other);
        },
      },
    );
    await expect(outcome).rejects.toThrow(
      new PaceBusyError(
        `the sweep folder ${dir}: its lock was taken over (held now by process 4242 on host elsewhere.example) ` +
          'while this sweep was not running (suspended, or stopped, for longer than a lock is kept); its runs were ' +
          'stopped at their checkpoints and no results written since',
      ),
    );
    // the slow run was interrupted (it keeps its checkpoint), the other host's lock was left as it is, and the
    // results written before (after the first run) were not written again
    expect(fs.existsSync(path.join(dir, 'sigma=1_seed=0', 'interrupted'))).toBe(true);
    expect(fs.readFileSync(lock, 'utf8')).toBe(other);
    expect(events.filter((event) => event.type === 'results')).toHaveLength(1);
    // nor was the interrupted run marked failed (its failed.json would be written into the other sweep's folder)
    expect(events.filter((event) => event.type === 'fail')).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'sigma=1_seed=0', 'failed.json'))).toBe(false);
  });

  test('stopTimeoutSeconds is checked', async () => {
    await expect(
      sweep({ base, grid: {}, dir: path.join(temp.dir, 'bad-timeout') }, { stopTimeoutSeconds: 0 }),
    ).rejects.toThrow(/^options\.stopTimeoutSeconds: /);
  });
});

describe("the sweep folder's lock", () => {
  const identity = { base: {}, grid: {}, seeds: [0], protocol: 'grid', tuneSeed: 0 } as never;
  let deadPid = 4_000_000;
  while (fs.existsSync(`/proc/${deadPid}`)) deadPid += 1;
  const lockedFolder = (name: string, lock: string) => {
    const dir = path.join(temp.dir, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'sweep.lock'), lock);
    return dir;
  };

  test('names its process, start and host; a lock of another host is refused until untouched for 120 s', () => {
    // Bugs: the lock held a pid alone, so a sweep on another host sharing the folder looked dead here; then one of
    // another host was refused for ever, so a run killed on one node could not be resumed on another.
    const dir = lockedFolder('other-host', JSON.stringify({ pid: deadPid, hostname: 'elsewhere' }));
    const lock = path.join(dir, 'sweep.lock');
    expect(() => openSweepFolder(dir, identity)).toThrow(PaceBusyError);
    expect(() => openSweepFolder(dir, identity)).toThrow(
      new RegExp(
        `^the sweep folder ${dir} is in use by process ${deadPid} on host elsewhere, which touched its lock \\d+ s ago ` +
          `\\(a lock untouched for 120 s is taken over\\) \\(${lock}\\)$`,
      ),
    );
    const longAgo = new Date(Date.now() - 121_000);
    fs.utimesSync(lock, longAgo, longAgo);
    const release = openSweepFolder(dir, identity);
    expect(JSON.parse(fs.readFileSync(lock, 'utf8'))).toEqual({
      pid: process.pid,
      hostname: os.hostname(),
      started: fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19],
      processes: `${fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}/${fs.readlinkSync('/proc/self/ns/pid')}`,
    });
    release();
    expect(fs.existsSync(lock)).toBe(false);
  });

  test("a lock of another container with the host's name is judged as another host's, not by its pid", () => {
    // Bug: containers sharing the host's name (Docker --network host) but not its pids looked up the holder's pid
    // in their own namespace, found it gone (or another process), broke a live lock and removed its writer's files.
    const other = 'b3c1a5f0-0000-4000-8000-000000000000/pid:[4026531999]';
    for (const pid of [deadPid, process.ppid]) {
      const dir = lockedFolder(
        `other-container-${pid}`,
        JSON.stringify({ pid, hostname: os.hostname(), processes: other }),
      );
      const lock = path.join(dir, 'sweep.lock');
      expect(() => openSweepFolder(dir, identity)).toThrow(
        new RegExp(
          `^the sweep folder ${dir} is in use by process ${pid} in another container of host ${os.hostname()}, ` +
            `which touched its lock \\d+ s ago \\(a lock untouched for 120 s is taken over\\)`,
        ),
      );
      const longAgo = new Date(Date.now() - 121_000);
      fs.utimesSync(lock, longAgo, longAgo);
      openSweepFolder(dir, identity)();
      expect(fs.existsSync(lock)).toBe(false);
    }
  });

  test('is touched while held, so another host sees it live', async () => {
    const dir = path.join(temp.dir, 'heartbeat');
    fs.mkdirSync(dir);
    const lock = path.join(dir, 'x.lock');
    const release = takeLock(
      dir,
      lock,
      { folder: 'folder', user: 'user' },
      { heartbeatSeconds: 0.05, staleSeconds: 1 },
    );
    try {
      const longAgo = new Date(Date.now() - 60_000);
      fs.utimesSync(lock, longAgo, longAgo);
      const deadline = Date.now() + 10_000; // a touch every 50 ms: the first comes at once on an idle loop
      while (Date.now() - fs.statSync(lock).mtimeMs > 5_000 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(Date.now() - fs.statSync(lock).mtimeMs).toBeLessThan(5_000);
    } finally {
      release();
    }
  });

  test('a pid given to a later process (a restarted container), or a lock naming no process, are told apart', () => {
    // The holder's pid is running, but it started at another time: another process has the pid now.
    const reused = lockedFolder(
      'pid-reused',
      JSON.stringify({ pid: process.ppid, hostname: os.hostname(), started: '1' }),
    );
    openSweepFolder(reused, identity)();
    expect(fs.readdirSync(reused)).toEqual(['sweep.json']);
    // An empty lock (a copy killed half-way, a touch) names no process, however long it is waited on.
    const empty = lockedFolder('empty-lock', '');
    expect(() => openSweepFolder(empty, identity)).toThrow(
      `the sweep folder ${empty} is locked by ${path.join(empty, 'sweep.lock')}, which names no process ("")`,
    );
  });

  test('a second claim from another worker thread of this process is refused', async () => {
    // Bug: each thread had its own record of the locks held, and took one naming its own pid as a stale lock.
    const dir = path.join(temp.dir, 'threads');
    fs.mkdirSync(dir);
    const script = `
      const { parentPort } = require('node:worker_threads');
      const { takeLock } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'folder-lock.js'))});
      try {
        const release = takeLock(${JSON.stringify(dir)}, ${JSON.stringify(path.join(dir, 'x.lock'))}, { folder: 'folder', user: 'user' });
        parentPort.postMessage('taken');
        parentPort.once('message', () => { release(); parentPort.postMessage('released'); });
      } catch (error) { parentPort.postMessage(error.message); }`;
    const next = (worker: Worker) => new Promise<string>((resolve) => worker.once('message', resolve));
    const first = new Worker(script, { eval: true });
    let second: Worker | undefined;
    try {
      expect(await next(first)).toBe('taken');
      second = new Worker(script, { eval: true }); // only once the first holds the lock
      expect(await next(second)).toBe(
        `the folder ${dir} is in use by another thread of this process (${process.pid}) (${path.join(dir, 'x.lock')})`,
      );
      first.postMessage('release');
      expect(await next(first)).toBe('released');
      expect(fs.existsSync(path.join(dir, 'x.lock'))).toBe(false);
    } finally {
      await first.terminate();
      await second?.terminate();
    }
  });

  test("this host's dead holder is replaced, in the new format and the old (a bare pid)", () => {
    for (const lock of [JSON.stringify({ pid: deadPid, hostname: os.hostname() }), `${deadPid}\n`]) {
      const dir = lockedFolder(`dead-${lock.length}`, lock);
      openSweepFolder(dir, identity)();
      expect(fs.readdirSync(dir)).toEqual(['sweep.json']);
    }
    const live = lockedFolder('live-old-format', `${process.ppid}\n`);
    expect(() => openSweepFolder(live, identity)).toThrow(`is in use by process ${process.ppid}`);
  });

  test('a stale lock that another sweep breaks, or breaks and takes, while this one looks at it', () => {
    // Bug: the stale lock was read twice and then removed: a second sweep removing it between the reads made the
    // second read throw ENOENT; one taking it between the second read and the removal lost its lock.
    const realRead = fs.readFileSync;
    const meddle = (dir: string, what: () => void) => {
      let done = false;
      return jest.spyOn(fs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, ...rest: never[]) => {
        const text = (realRead as (...a: unknown[]) => unknown)(file, ...rest);
        if (!done && file === path.join(dir, 'sweep.lock')) {
          done = true;
          what();
        }
        return text;
      }) as typeof fs.readFileSync);
    };
    const stale = JSON.stringify({ pid: deadPid, hostname: os.hostname() });
    const broken = lockedFolder('broken-meanwhile', stale);
    const spy = meddle(broken, () => fs.rmSync(path.join(broken, 'sweep.lock')));
    try {
      const release = openSweepFolder(broken, identity);
      expect(JSON.parse(fs.readFileSync(path.join(broken, 'sweep.lock'), 'utf8')).pid).toBe(process.pid);
      release();
    } finally {
      spy.mockRestore();
    }
    const taken = lockedFolder('taken-meanwhile', stale);
    const theirs = JSON.stringify({ pid: process.ppid, hostname: os.hostname() });
    const spy2 = meddle(taken, () => fs.writeFileSync(path.join(taken, 'sweep.lock'), theirs));
    try {
      expect(() => openSweepFolder(taken, identity)).toThrow(`is in use by process ${process.ppid}`);
    } finally {
      spy2.mockRestore();
    }
    expect(fs.readFileSync(path.join(taken, 'sweep.lock'), 'utf8')).toBe(theirs);
    expect(fs.readdirSync(taken)).toEqual(['sweep.lock']);
  });

  test('a lock taken after the stale one was read is never moved or removed, whoever else takes the name', () => {
    // Bug: the breaker renamed the lock aside, found it was no longer the stale one and linked it back; a fourth
    // process taking the free name in between kept the name, and the one whose lock was moved aside held it too.
    const dir = lockedFolder('three-way', JSON.stringify({ pid: deadPid, hostname: os.hostname() }));
    const lock = path.join(dir, 'sweep.lock');
    const theirs = JSON.stringify({ pid: process.ppid, hostname: os.hostname() });
    const fourth = JSON.stringify({ pid: process.pid + 1, hostname: os.hostname() });
    const realRead = fs.readFileSync;
    const realRename = fs.renameSync;
    const realRm = fs.rmSync;
    let taken = false;
    const touched: string[] = [];
    const spies = [
      jest.spyOn(fs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, ...rest: never[]) => {
        const text = (realRead as (...a: unknown[]) => unknown)(file, ...rest);
        if (!taken && file === lock) {
          taken = true; // another process broke the stale lock and took the name
          fs.writeFileSync(lock, theirs);
        }
        return text;
      }) as typeof fs.readFileSync),
      jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
        realRename(from, to);
        if (from === lock) {
          touched.push('renamed');
          fs.writeFileSync(lock, fourth); // the name is free: a fourth process takes it
        }
      }),
      jest.spyOn(fs, 'rmSync').mockImplementation(((file: fs.PathLike, options?: fs.RmOptions) => {
        if (file === lock) touched.push('removed');
        realRm(file, options);
      }) as typeof fs.rmSync),
    ];
    try {
      expect(() => openSweepFolder(dir, identity)).toThrow(`is in use by process ${process.ppid}`);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(touched).toEqual([]);
    expect(fs.readFileSync(lock, 'utf8')).toBe(theirs);
    expect(fs.readdirSync(dir)).toEqual(['sweep.lock']);
  });

  test('waits while another process breaks the stale lock; a break left half-way is named, not undone', async () => {
    const stale = JSON.stringify({ pid: deadPid, hostname: os.hostname() });
    const busy = lockedFolder('breaking', stale);
    const breaker = path.join(busy, 'sweep.lock.break');
    fs.writeFileSync(breaker, JSON.stringify({ pid: process.ppid, hostname: os.hostname() }));
    // The other breaker finishes 300 ms later, from a process of its own (taking the lock blocks this thread).
    const other = spawn('sh', ['-c', `sleep 0.3; rm -f '${breaker}'`], { stdio: 'ignore' });
    const finished = new Promise((resolve) => other.on('exit', resolve));
    const started = Date.now();
    openSweepFolder(busy, identity)();
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await finished;
    expect(fs.readdirSync(busy)).toEqual(['sweep.json']);

    // A breaker whose process stopped half-way: removing it could let two processes break at once.
    const left = lockedFolder('break-left', stale);
    const leftBreaker = path.join(left, 'sweep.lock.break');
    fs.writeFileSync(leftBreaker, JSON.stringify({ pid: deadPid, hostname: os.hostname() }));
    const minuteAgo = new Date(Date.now() - 60_000);
    fs.utimesSync(leftBreaker, minuteAgo, minuteAgo);
    expect(() => openSweepFolder(left, identity)).toThrow(
      new RegExp(
        `^the sweep folder ${left}: process ${deadPid} on host ${os.hostname()} stopped while breaking the stale ` +
          `lock ${path.join(left, 'sweep.lock')} and left ${leftBreaker} \\(untouched for 6\\d s\\): if no sweep ` +
          `is using the folder, remove it$`,
      ),
    );
    expect(fs.readdirSync(left).sort()).toEqual(['sweep.lock', 'sweep.lock.break']);
    fs.rmSync(leftBreaker);
    openSweepFolder(left, identity)();
  });
});

describe('pace report on a sweep folder of the paper protocol', () => {
  test("grids per task of the tuning runs' validation accuracy; unfinished runs are labelled, not in a grid", async () => {
    // Bug: tuning runs (validation accuracy only) and evaluation runs (test accuracy only) were one grid: it fell
    // back to training accuracy, mixed the stages and tasks in its cells, and made trainSamples an axis.
    const dir = path.join(temp.dir, 'protocol');
    const stage = (task: string) => ({ train: `${task}-train.safetensors`, validation: `${task}-val.safetensors` });
    const evaluate = (task: string) => ({ train: `${task}-train.safetensors`, test: `${task}-test.safetensors` });
    await sweep(
      {
        base,
        tasks: ['alpha', 'beta'].map((name) => ({ name, tune: stage(name), evaluate: evaluate(name) })),
        grid: { 'trainer.pace.sigma': [0.5, 1], 'trainer.pace.lambda': [1, 2] },
        seeds: [0, 1],
        dir,
      },
      { baseDir: temp.dir, childModule: standIn, parallel: 4 },
    );
    const unfinished = 'tune_alpha_sigma=1_lambda=2_seed=0';
    fs.rmSync(path.join(dir, unfinished, 'finished.json'));
    const runs = readRuns([dir]);
    expect(runs).toHaveLength(12); // 2 tasks × (4 tuning runs + 2 evaluation seeds)
    expect(runs.find((run) => run.name === unfinished)?.sweep).toMatchObject({
      status: 'unfinished',
      stage: 'tune',
      task: 'alpha',
    });
    expect(runs.find((run) => run.name === 'eval_beta_sigma=1_lambda=2_seed=1')?.sweep).toMatchObject({
      status: 'finished',
      stage: 'evaluate',
      task: 'beta',
    });
    // in the order the plan made them (by name, every evaluation run came before the tuning runs)
    const stages = (task: string) => [...Array(4).fill(`tune ${task}`), ...Array(2).fill(`evaluate ${task}`)];
    expect(runs.map((run) => `${run.sweep!.stage} ${run.sweep!.task}`)).toEqual([
      ...stages('alpha'),
      ...stages('beta'),
    ]);
    expect(runs.map((run) => run.sweep!.order)).toEqual(
      [...runs.map((run) => run.sweep!.order)].sort((a, b) => a! - b!),
    );
    const grids = settingGrids(runs);
    expect(grids.map((g) => [g.group, g.metric, g.x.name, g.y.name, g.averagedOver])).toEqual([
      ['tuning runs of alpha', 'val_acc', 'σ', 'λ', []],
      ['tuning runs of beta', 'val_acc', 'σ', 'λ', []],
    ]);
    const means = (i: number) => grids[i].cells.map((row) => row.map((cell) => cell.mean));
    const close = (values: (number | undefined)[][]) =>
      values.map((row) => row.map((v) => (v === undefined ? v : Math.round(v * 1e9) / 1e9)));
    // cells[λ][σ] = 0.5 + σ / 10 + λ / 100 (+ 0.2 on beta); the unfinished run's cell is empty
    expect(close(means(0))).toEqual([
      [0.56, 0.61],
      [0.57, undefined],
    ]);
    expect(close(means(1))).toEqual([
      [0.76, 0.81],
      [0.77, 0.82],
    ]);
    const label = labelRuns(runs)[runs.findIndex((run) => run.name === unfinished)].label;
    expect(label).toMatch(/ \(unfinished\)$/);

    // A user's own sweep config (named sweep.json, as the README names it) beside a plain run: the run is no sweep's.
    // Bug: any folder holding a sweep.json was taken for a sweep folder, so the finished run read as unfinished.
    const own = path.join(temp.dir, 'own-config');
    fs.mkdirSync(own);
    fs.cpSync(path.join(dir, 'eval_beta_sigma=1_lambda=2_seed=1'), path.join(own, 'my-run'), { recursive: true });
    fs.rmSync(path.join(own, 'my-run', 'finished.json'));
    const userConfig = { base, grid: { 'trainer.pace.sigma': [0.5, 1] }, seeds: [0] };
    fs.writeFileSync(path.join(own, 'sweep.json'), JSON.stringify(userConfig));
    const [plain] = readRuns([path.join(own, 'my-run')]);
    expect(plain.sweep).toBeUndefined();
    expect(labelRuns([plain])[0].label).not.toMatch(/unfinished/);
    // ... and sweeping into that folder is refused as what it is, not as "a sweep of another config".
    await expect(sweep(path.join(own, 'sweep.json'), { dir: own, childModule: standIn })).rejects.toThrow(
      `the sweep folder ${own} is the config's own folder: a sweep folder keeps its config as sweep.json, which ` +
        'here is the config file itself; give the sweep another folder (--dir, or "dir")',
    );
  });
});
