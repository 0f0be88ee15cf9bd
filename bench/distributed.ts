// Data-parallel benchmark: the PACE step of ViT-S (LoRA-mul + VPT-add, rank 10, σ = λ = 1, drop path 0.1) in one
// process with global batch B, against two processes of B/2 each over Gloo on this machine's loopback, one CPU
// thread per process, the two alternating in one invocation (both started by `launch`). Each configuration runs
// fit epochs over the same global batches; the step time is an epoch's seconds over its steps (the first epoch
// is warm-up and not counted); the all-reduce share is the time in the gradient all-reduces (bucketing, the
// collective, the copies back) over the epoch's seconds. Not part of `npm test`.
//
// Usage: npx tsx bench/distributed.ts [--rounds 3] [--batch 16] [--steps 6] [--model vit_small_patch16_224]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { createModel, distributedGroup, initDistributed, launch, tensor, TensorDataset, Trainer } from 'pace-peft';

interface WorkerArgs {
  model: string;
  batch: number;
  steps: number;
  epochs: number;
  out: string;
}

interface Measured {
  stepMs: number;
  allReduceMs: number;
  allReduceShare: number;
}

async function worker(args: WorkerArgs): Promise<void> {
  if (Number(process.env.WORLD_SIZE ?? '1') > 1) await initDistributed({ backend: 'gloo' });
  const model = await createModel(args.model, { numClasses: 100, dropPathRate: 0.1, seed: 0 });
  model.addAdapters({ type: 'loramul_vptadd', rank: 10 });
  const size = model.spec.imgSize;
  const count = args.batch * args.steps;
  const images = tensor(
    Float32Array.from({ length: count * 3 * size * size }, (_, i) => Math.sin(i * 0.37)),
    [count, 3, size, size],
  );
  const labels = tensor(BigInt64Array.from({ length: count }, (_, i) => BigInt(i % 100)));
  const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, seed: 0 });
  const history = await trainer.fit(new TensorDataset(images, labels), {
    epochs: args.epochs,
    batchSize: args.batch,
    schedule: false,
    progress: false,
  });
  const counted = history.epochs.slice(1);
  const seconds = counted.reduce((sum, logs) => sum + logs.seconds, 0);
  const communication = counted.reduce((sum, logs) => sum + (logs.communicationSeconds ?? 0), 0);
  const steps = counted.length * args.steps;
  const measured: Measured = {
    stepMs: (1000 * seconds) / steps,
    allReduceMs: (1000 * communication) / steps,
    allReduceShare: communication / seconds,
  };
  if ((distributedGroup()?.rank ?? 0) === 0) fs.writeFileSync(args.out, JSON.stringify(measured));
}

async function measure(ranks: number, args: WorkerArgs): Promise<Measured> {
  fs.rmSync(args.out, { force: true });
  const command = [process.execPath, '--import', 'tsx', __filename, '--worker', JSON.stringify(args)];
  const result = await launch(command, { nprocPerNode: ranks });
  if (result.exitCode !== 0) throw new Error(`${ranks} rank(s): ${result.failure}`);
  return JSON.parse(fs.readFileSync(args.out, 'utf8')) as Measured;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main(): Promise<void> {
  const workerAt = process.argv.indexOf('--worker');
  if (workerAt >= 0) return worker(JSON.parse(process.argv[workerAt + 1]) as WorkerArgs);
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      batch: { type: 'string', default: '16' },
      steps: { type: 'string', default: '6' },
      model: { type: 'string', default: 'vit_small_patch16_224' },
    },
  });
  process.env.PACE_NUM_THREADS = '1'; // one thread per process, in both configurations
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pace-bench-')), 'result.json');
  const args: WorkerArgs = {
    model: values.model,
    batch: Number(values.batch),
    steps: Number(values.steps),
    epochs: 3,
    out,
  };
  const results: Record<1 | 2, Measured[]> = { 1: [], 2: [] };
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const ranks of [1, 2] as const) {
      const measured = await measure(ranks, args);
      results[ranks].push(measured);
      console.log(`round ${round + 1}, ${ranks} rank(s): step ${measured.stepMs.toFixed(0)} ms`);
    }
  }
  const step = (ranks: 1 | 2) => median(results[ranks].map((r) => r.stepMs));
  console.log(
    `\n${values.model}, PACE step, global batch ${args.batch}, 1 thread per process, median of ${values.rounds}:`,
  );
  console.log(`  1 rank:  ${step(1).toFixed(0)} ms/step`);
  console.log(
    `  2 ranks: ${step(2).toFixed(0)} ms/step (speed-up ${(step(1) / step(2)).toFixed(2)}x), all-reduce ` +
      `${median(results[2].map((r) => r.allReduceMs)).toFixed(1)} ms/step = ` +
      `${(100 * median(results[2].map((r) => r.allReduceShare))).toFixed(1)} % of the step`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack}\n`);
  process.exit(1);
});
