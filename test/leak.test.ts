import { createModel, memoryStats, tensor, Trainer } from '../lib';
import { watchEventLoop } from './support/event-loop';
import { colourDataset, tinyVit } from './support/synthetic';
import { testIf } from './support/test-if';

const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

/** Collects garbage and lets the finalizers it queued run (Node runs them on a later event-loop turn). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

// Resident memory outside V8's own heap: how far V8 grows its heap depends on when its collector runs (on a loaded
// machine it grew 48 MiB once for 10,000 tensor handles), and is not the native memory these tests are about.
const outsideV8 = () => process.memoryUsage().rss - process.memoryUsage().heapTotal;

// One synchronous burst, the hardest case: the handles' small native records stay alive until their
// finalizers run on a later event-loop turn, and must not keep the freed tensor memory from being reused.
test('creating and disposing 10,000 tensors keeps resident memory flat', async () => {
  const values = new Float32Array(16 * 1024); // 64 KiB a tensor, 640 MiB through the allocator in all
  const cycle = (count: number) => {
    for (let i = 0; i < count; i++) {
      const t = tensor(values, [128, 128]);
      t.dispose();
    }
  };
  cycle(2000);
  await settle();
  const rssBefore = outsideV8();
  const before = memoryStats();
  cycle(10000);
  await settle();
  const grown = outsideV8() - rssBefore;
  console.log(
    `10,000 create/dispose cycles of 64 KiB tensors: RSS outside V8's heap grew by ${(grown / MiB).toFixed(2)} MiB`,
  );
  expect(grown).toBeLessThan(16 * MiB);
  // Other suites' garbage may be collected meanwhile (the counters are per process), so: no growth.
  const after = memoryStats();
  expect(after.liveTensors).toBeLessThanOrEqual(before.liveTensors);
  expect(after.tensorBytes).toBeLessThanOrEqual(before.tensorBytes);
});

const withGc = testIf(Boolean(gc), 'node runs without --expose-gc, which npm test gives it');
withGc('tensors that are never disposed are freed by the garbage collector', async () => {
  const values = new Float32Array(64 * 1024); // 256 KiB a tensor
  await settle();
  const rssBefore = process.memoryUsage().rss;
  const before = memoryStats();
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 256; i++) tensor(values, [values.length]);
    await settle();
  }
  // 2,048 tensors of 256 KiB = 512 MiB were created and dropped without dispose().
  const grown = process.memoryUsage().rss - rssBefore;
  console.log(`2,048 undisposed 256 KiB tensors: RSS grew by ${(grown / MiB).toFixed(2)} MiB after GC`);
  expect(grown).toBeLessThan(96 * MiB);
  expect(memoryStats().liveTensors).toBeLessThanOrEqual(before.liveTensors);
});

test('1,000 cycles of create model → forward → dispose, and three fits, keep resident memory flat', async () => {
  using images = tensor(new Float32Array(2 * 3 * 16 * 16).fill(0.5), [2, 3, 16, 16]);
  const cycle = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const model = await createModel(tinyVit);
      const logits = await model.forward(images);
      logits.dispose();
      model.dispose();
    }
  };
  await cycle(100);
  await settle();
  const before = outsideV8();
  await cycle(1000);
  await settle();
  const afterModels = outsideV8();
  const data = colourDataset(64, 3);
  for (let run = 0; run < 3; run++) {
    using model = await createModel(tinyVit, { seed: run });
    model.addAdapters({ rank: 2 });
    await new Trainer(model, { pace: { sigma: 0.5, lambda: 1 } }).fit(data, {
      epochs: 2,
      batchSize: 16,
      progress: false,
    });
  }
  await settle();
  const afterFits = outsideV8();
  console.log(
    `RSS outside V8's heap: before ${(before / MiB).toFixed(1)} MiB, after 1,000 model cycles ${(afterModels / MiB).toFixed(1)} MiB, after 3 fits ${(afterFits / MiB).toFixed(1)} MiB`,
  );
  expect(afterModels - before).toBeLessThan(24 * MiB);
  expect(afterFits - afterModels).toBeLessThan(24 * MiB);
});

// A fit that ran on the JavaScript thread would hold the loop for most of its time; one that runs natively leaves
// only scheduling delays, however fast or loaded the machine. Bounds in time units would depend on the machine:
// these are fractions of the fit and counts of ticks.
test('during a fit, a 10 ms timer keeps firing: the loop is never held for most of the fit or for long', async () => {
  const data = colourDataset(256, 4);
  using model = await createModel(tinyVit, { seed: 1 });
  model.addAdapters({ rank: 2 });
  const {
    result: history,
    gaps,
    elapsed,
    held,
  } = await watchEventLoop(() =>
    new Trainer(model, { pace: { sigma: 0.5, lambda: 1 } }).fit(data, { epochs: 30, batchSize: 16, progress: false }),
  );
  const worst = Math.max(...gaps) - 10;
  console.log(
    `fit of ${elapsed.toFixed(0)} ms, ${gaps.length} ticks: the loop was held ${((100 * held) / elapsed).toFixed(1)} % of the time, at most ${worst.toFixed(1)} ms at once`,
  );
  expect(history.epochs).toHaveLength(30);
  expect(gaps.length).toBeGreaterThanOrEqual(20); // the fit lasted long enough to mean something
  expect(held / elapsed).toBeLessThan(0.5); // ≈ 1 if the loop waited on the training
  expect(worst).toBeLessThan(Math.max(250, elapsed / 4));
});
