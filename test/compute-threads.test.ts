// Where native tensor work runs (native/addon/compute_threads.h). libgomp keeps an OpenMP team for every thread that
// ever computed, and once teams outnumber the CPUs every parallel region waits for a wake-up: libuv handed each job
// to whichever of its threads was free, and a fresh process grew a team on each (steps 10-15 % slower from then
// on). Compute threads are named 'pace-compute' and their teams inherit the name, so /proc tells where work ran.
// Run in a fresh process: this one's threads carry the history of the suites before.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { repoRoot } from './support/paths';
import { testIf } from './support/test-if';

interface Counts {
  all: number;
  compute: number;
}

const child = String.raw`
const fs = require('node:fs');
const { createModel, measureGemm, prepareImages, setThreads, tensor, Trainer } = require(process.env.PACE_LIB);
const count = () => {
  // A thread may end between the listing and the read (a compute thread retiring, one of Node's own).
  const names = fs.readdirSync('/proc/self/task').flatMap((t) => {
    try { return [fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim()]; } catch { return []; }
  });
  return { all: names.length, compute: names.filter((name) => name === 'pace-compute').length };
};
const imagenet = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const tiny = { family: 'vit', imgSize: 64, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 4 };
async function main() {
  setThreads(2); // a team of two: one thread more for every thread that computes with it
  const model = await createModel(tiny, { seed: 1 });
  model.addAdapters({ rank: 2 });
  const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, seed: 1 });
  // Large enough for libtorch to split its element-wise passes between threads (its grain is 32,768 elements).
  const pixels = tensor(Uint8Array.from({ length: 16 * 64 * 64 * 3 }, (_, i) => (i * 7919) % 256), [16, 64, 64, 3]);
  const targets = tensor(BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i % 4)));
  const round = async () => {
    const images = await prepareImages(pixels, { size: 64, ...imagenet });
    (await model.forward(images)).dispose();
    await trainer.trainStep(images, targets);
    images.dispose();
  };
  await round();
  const first = count();
  for (let i = 0; i < 12; i++) await round();
  const sequential = count();
  // A GEMM measurement holds the first compute thread for 1.5 s while a forward runs beside it.
  const idle = count();
  const slow = measureGemm({ size: 256, seconds: 1.5 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const images = await prepareImages(pixels, { size: 64, ...imagenet });
  (await model.forward(images)).dispose();
  const overlapping = count();
  await slow;
  const deadline = Date.now() + 15000;
  while (count().compute > idle.compute && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
  fs.writeSync(1, JSON.stringify({ first, sequential, idle, overlapping, retired: count() }));
}
main().catch((error) => { console.error(error); process.exit(1); });
`;

testIf(process.platform === 'linux', 'threads are counted in /proc')(
  'awaited calls compute on one thread and its team; overlapping work takes another, which ends once idle',
  () => {
    const run = spawnSync(process.execPath, ['-e', child], {
      env: { ...process.env, PACE_LIB: path.join(repoRoot, 'dist') },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(run.stderr).toBe('');
    const counts = JSON.parse(run.stdout) as Record<string, Counts>;
    // A compute thread and the threads it started (its OpenMP team), and none more however many libuv threads
    // took the jobs.
    expect(counts.first.compute).toBeGreaterThanOrEqual(2);
    expect(counts.sequential).toEqual(counts.first);
    // The quick forward ran beside the slow one on a second compute thread (and its team).
    expect(counts.overlapping.compute).toBeGreaterThan(counts.idle.compute);
    expect(counts.retired.compute).toBe(counts.idle.compute);
  },
);
