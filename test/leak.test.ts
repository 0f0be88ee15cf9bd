import { memoryStats, tensor } from '../lib';

const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

/** Collects garbage and lets the finalizers it queued run (Node runs them on a later event-loop turn). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

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
  const rssBefore = process.memoryUsage().rss;
  const before = memoryStats();
  cycle(10000);
  await settle();
  const grown = process.memoryUsage().rss - rssBefore;
  console.log(`10,000 create/dispose cycles of 64 KiB tensors: RSS grew by ${(grown / MiB).toFixed(2)} MiB`);
  expect(grown).toBeLessThan(16 * MiB);
  // Other suites' garbage may be collected meanwhile (the counters are per process), so: no growth.
  const after = memoryStats();
  expect(after.liveTensors).toBeLessThanOrEqual(before.liveTensors);
  expect(after.tensorBytes).toBeLessThanOrEqual(before.tensorBytes);
});

const withGc = gc ? test : test.skip;
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
