// A fit whose run folder's lock another host took over while the fit was not running (a suspended machine) stops and
// writes nothing more there. The lock's heartbeat runs every 50 ms here (15 s in use), so that the test sees it soon.
import fs from 'node:fs';
import path from 'node:path';

import { PaceBusyError, readTensorHeader, Trainer, type Callback } from '../lib';
import { makeTempDir } from './support/paths';
import { colourDataset, tinyVit } from './support/synthetic';
import { sharedTinyModel } from './support/tiny-models';

jest.mock('../lib/folder-lock', () => {
  const actual = jest.requireActual('../lib/folder-lock');
  return {
    ...actual,
    takeLock: (dir: string, lock: string, use: unknown, _timing: unknown, onLost?: (now: string) => void) =>
      actual.takeLock(dir, lock, use, { heartbeatSeconds: 0.05, staleSeconds: 120 }, onLost),
  };
});

const temp = makeTempDir('fit-lock-lost');
afterAll(() => temp.cleanup());

const { freshModel } = sharedTinyModel(temp.dir, tinyVit);
const trainerOptions = { optimizer: { lr: 1e-2 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 3 };
const train = colourDataset(64, 1);
const otherHost = `${JSON.stringify({ pid: 4242, hostname: 'elsewhere.example' })}\n`;

const stepsPerEpoch = 64 / 4;

/**
 * Runs a fit of `epochs` epochs into `runDir` whose lock is rewritten as another host's by `takeOver(lock)`'s
 * callback (before the `later` callbacks).
 */
async function fitTakenOver(runDir: string, takeOver: (lock: string) => Callback, epochs = 4, later: Callback[] = []) {
  using model = await freshModel();
  const trainer = new Trainer(model, trainerOptions);
  const lock = path.join(runDir, 'fit.lock');
  const fit = trainer.fit(train, {
    epochs,
    batchSize: 4,
    runDir,
    progress: false,
    callbacks: [takeOver(lock), ...later],
  });
  await expect(fit).rejects.toThrow(
    new PaceBusyError(
      `the run folder ${runDir}: its lock was taken over (held now by process 4242 on host elsewhere.example) ` +
        'while this fit was not running (suspended, or stopped, for longer than a lock is kept); the fit stopped ' +
        'at its next step and wrote nothing more there',
    ),
  );
  // Nothing after epoch 0 was written, and the other host's lock was left as it is.
  expect((await readTensorHeader(path.join(runDir, 'last.safetensors'))).metadata?.epoch).toBe('0');
  expect(fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
  expect(fs.readFileSync(lock, 'utf8')).toBe(otherHost);
  return trainer.iteration;
}

// Bug: the heartbeat stopped touching the lock but the fit went on, writing its checkpoints and metrics over the
// other fit's. Here the lock is rewritten as another host's, as a fit that took it over (after 120 s untouched)
// would leave it.
test('a fit whose run folder was taken over between epochs stops before the next and writes nothing more', async () => {
  const iterations = await fitTakenOver(path.join(temp.dir, 'between-epochs'), (lock) => ({
    onEpochEnd: async (epoch) => {
      if (epoch !== 0) return;
      fs.writeFileSync(lock, otherHost);
      await new Promise((resolve) => setTimeout(resolve, 300)); // several heartbeats
    },
  }));
  expect(iterations).toBe(stepsPerEpoch); // epoch 1 never started
});

test('a fit whose run folder was taken over during an epoch writes nothing of that epoch', async () => {
  // The epoch stops at the heartbeat that sees the loss; this one's steps (milliseconds each) may all end before
  // that, and the epoch waits for its async onBatchEnd calls: its checkpoint and metrics are not written all the same.
  let epoch = -1;
  const iterations = await fitTakenOver(path.join(temp.dir, 'during-epoch'), (lock) => ({
    onEpochBegin: (begun) => {
      epoch = begun;
    },
    onBatchEnd: async (step) => {
      if (epoch !== 1 || step !== 0) return;
      fs.writeFileSync(lock, otherHost);
      await new Promise((resolve) => setTimeout(resolve, 300)); // several heartbeats
    },
  }));
  expect(iterations).toBeGreaterThan(stepsPerEpoch);
  expect(iterations).toBeLessThanOrEqual(2 * stepsPerEpoch);
});

test('a fit whose run folder was taken over in its last callbacks fails, and marks no best there', async () => {
  // Bugs (review): nothing looked at the lock after the last phase, so the fit ended 'completed' (and pace fit went
  // on to write its adapters into the other run's folder); a markBest in that phase wrote the folder's mark file.
  const runDir = path.join(temp.dir, 'last-epoch');
  const markBest: Callback = { onEpochEnd: (_epoch, _logs, control) => control.markBest() };
  const takeOver = (lock: string): Callback => ({
    onEpochEnd: async () => {
      fs.writeFileSync(lock, otherHost);
      await new Promise((resolve) => setTimeout(resolve, 300)); // several heartbeats
    },
  });
  expect(await fitTakenOver(runDir, takeOver, 1, [markBest])).toBe(stepsPerEpoch);
  expect(fs.existsSync(path.join(runDir, 'marked-best.safetensors'))).toBe(false);
  // Nor does one taken over while onTrainEnd runs end 'completed'.
  const inTrainEnd = (lock: string): Callback => ({
    onTrainEnd: async () => {
      fs.writeFileSync(lock, otherHost);
      await new Promise((resolve) => setTimeout(resolve, 300));
    },
  });
  expect(await fitTakenOver(path.join(temp.dir, 'train-end'), inTrainEnd, 1)).toBe(stepsPerEpoch);
});

test('a fit whose lock stays its own runs to its end', async () => {
  // The heartbeat at 50 ms reads the lock many times during the fit: a fit keeps a lock it holds.
  using model = await freshModel();
  const runDir = path.join(temp.dir, 'kept');
  const history = await new Trainer(model, trainerOptions).fit(train, {
    epochs: 2,
    batchSize: 4,
    runDir,
    progress: false,
  });
  expect(history.stopReason).toBe('completed');
  expect(fs.existsSync(path.join(runDir, 'fit.lock'))).toBe(false);
});
