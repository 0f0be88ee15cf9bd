// On the lent GPU machine (bench/device.sh): whole fits with whole-step CUDA graphs against the same fits without,
// same seed. In fp32 the replayed steps must give the eager losses and adapters bit for bit, unless the eager
// path itself is not reproducible (a second eager fit differing, e.g. from atomics in some backward kernel): then
// the graphed fit must stay within ten times that run-to-run spread, and the log says so. In bf16 the same
// comparison. Every kind of step must have been captured and replayed (no eager fallback). Then trainStep in a loop
// of one's own, fp32: the same losses and noise draws as eager steps; and two trainers' graphs side by side, one
// disposed while the other replays. Rehearse here with PACE_DEVICE=cpu (the graph
// path's eager stand-in, `rehearse`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createModel, tensor, TensorDataset, Trainer, type EpochLogs } from 'pace-peft';

const onCpu = process.env.PACE_DEVICE === 'cpu';
const device = onCpu ? 'cpu' : 'cuda:0';
const graphs = onCpu ? 'rehearse' : 'auto';
const samples = 16;
const batchSize = 4;
const epochs = 3; // 12 steps: 3 warm-ups, 1 capture, 8 replays

function dataset(): TensorDataset {
  const size = 3 * 224 * 224;
  const images = Float32Array.from({ length: samples * size }, (_, i) => Math.sin(0.0007 * i + (i % 7)));
  const labels = BigInt64Array.from({ length: samples }, (_, i) => BigInt((i * 3) % 10));
  return new TensorDataset(tensor(images, [samples, 3, 224, 224], { device }), tensor(labels));
}

interface Run {
  epochs: EpochLogs[];
  adapters: Buffer;
}

async function fit(precision: 'fp32' | 'bf16', stepGraphs: 'off' | 'auto' | 'rehearse'): Promise<Run> {
  const model = await createModel('vit_tiny_patch16_224', { numClasses: 10, seed: 1, device, dropPathRate: 0.1 });
  model.addAdapters({ type: 'loramul_vptadd', rank: 4 });
  const trainer = new Trainer(model, {
    pace: { sigma: 1, lambda: 1 },
    optimizer: { lr: 1e-3, clipGradNorm: 1 },
    seed: 2,
    precision,
  });
  const train = dataset();
  const history = await trainer.fit(train, {
    epochs,
    batchSize,
    progress: false,
    evalEvery: 100,
    scheduleStepping: 'step', // a new learning rate every step: the graphs read it from the device
    schedule: { warmupEpochs: 1 },
    stepGraphs,
  });
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pace-graphs-')), 'adapters.safetensors');
  await model.saveAdapters(file);
  train.images.dispose();
  train.labels.dispose();
  model.dispose();
  return { epochs: history.epochs, adapters: fs.readFileSync(file) };
}

const losses = (run: Run) => run.epochs.map((e) => e.loss);
const spread = (a: Run, b: Run) =>
  Math.max(...losses(a).map((loss, i) => Math.abs(loss - losses(b)[i]) / Math.abs(losses(b)[i])));

async function check(precision: 'fp32' | 'bf16'): Promise<boolean> {
  const eager = await fit(precision, 'off');
  const again = await fit(precision, 'off');
  const graphed = await fit(precision, graphs);
  console.log(`${precision}: eager losses   ${losses(eager).join(', ')}`);
  console.log(`${precision}: graphed losses ${losses(graphed).join(', ')}`);
  console.log(`${precision}: graph use per epoch ${JSON.stringify(graphed.epochs.map((e) => e.stepGraphs))}`);
  const counts = graphed.epochs.map((e) => e.stepGraphs!);
  const used =
    counts.every((c) => c.eager === 0) &&
    counts.reduce((n, c) => n + c.captured, 0) === 1 &&
    counts.reduce((n, c) => n + c.replayed, 0) === epochs * (samples / batchSize) - 4;
  if (!used) console.log(`${precision}: FAILED: the steps did not all run from one captured graph`);
  const reproducible = eager.adapters.equals(again.adapters) && spread(eager, again) === 0;
  const difference = spread(graphed, eager);
  let same: boolean;
  if (reproducible) {
    same = graphed.adapters.equals(eager.adapters) && difference === 0;
    console.log(
      `${precision}: ${same ? 'identical: losses and adapter bytes' : `DIFFERENT (losses by ${difference})`}`,
    );
  } else {
    const noise = spread(again, eager);
    same = difference <= 10 * noise + 1e-6;
    console.log(
      `${precision}: the eager path is not bit-reproducible here (two eager fits differ by ${noise.toExponential(2)}); ` +
        `graphed vs eager ${difference.toExponential(2)}: ${same ? 'within' : 'OUTSIDE'} ten times that`,
    );
  }
  return used && same;
}

interface OwnLoop {
  losses: number[];
  graphs: (string | undefined)[];
  /** Each step's noise draws as bytes, read after the step (a capture must leave the step's own there). */
  noise: string[];
}

// trainStep in a loop of one's own: each call is a separate native job, which may run on any of Node's pool
// threads (the capturing step once failed there: libtorch creates its cuDNN and cuBLAS handles per thread).
async function ownLoop(stepGraphs: 'off' | 'auto' | 'rehearse'): Promise<OwnLoop> {
  const model = await createModel('vit_tiny_patch16_224', { numClasses: 10, seed: 1, device, dropPathRate: 0.1 });
  model.addAdapters({ type: 'loramul_vptadd', rank: 4 });
  const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, optimizer: { lr: 1e-3 }, seed: 2 });
  const train = dataset();
  const run: OwnLoop = { losses: [], graphs: [], noise: [] };
  for (let step = 0; step < 8; step++) {
    const result = await trainer.trainStep(train.images, train.labels, { stepGraphs });
    run.losses.push(result.totalLoss);
    run.graphs.push(result.graph);
    const draws = trainer.lastNoise();
    run.noise.push(
      Object.keys(draws)
        .sort()
        .map((name) => Buffer.from(draws[name].toFloat32Array().buffer).toString('base64'))
        .join(','),
    );
    for (const draw of Object.values(draws)) draw.dispose();
  }
  train.images.dispose();
  train.labels.dispose();
  model.dispose();
  return run;
}

async function checkOwnLoop(): Promise<boolean> {
  const eager = await ownLoop('off');
  const graphed = await ownLoop(graphs);
  console.log(`trainStep: eager losses   ${eager.losses.join(', ')}`);
  console.log(`trainStep: graphed losses ${graphed.losses.join(', ')} (${graphed.graphs.join(', ')})`);
  const ran = graphed.graphs.join() === 'warmup,warmup,warmup,captured,replayed,replayed,replayed,replayed';
  const sameLosses = graphed.losses.every((loss, i) => loss === eager.losses[i]);
  const sameNoise = graphed.noise.every((draws, i) => draws === eager.noise[i]);
  console.log(
    `trainStep: ${ran ? 'captured once, then replayed' : 'FAILED: not captured and replayed'}; losses ` +
      `${sameLosses ? 'identical' : 'DIFFERENT'}; lastNoise after each step ${sameNoise ? 'identical' : 'DIFFERENT'}`,
  );
  return ran && sameLosses && sameNoise;
}

/** Two trainers' graphs in one process: A's are destroyed while B keeps replaying its own. */
async function checkTwoTrainers(): Promise<boolean> {
  const stepper = async () => {
    const model = await createModel('vit_tiny_patch16_224', { numClasses: 10, seed: 1, device, dropPathRate: 0.1 });
    model.addAdapters({ type: 'loramul_vptadd', rank: 4 });
    const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, optimizer: { lr: 1e-3 }, seed: 2 });
    const train = dataset();
    return {
      step: async (stepGraphs: 'off' | 'auto' | 'rehearse') =>
        (await trainer.trainStep(train.images, train.labels, { stepGraphs })).totalLoss,
      dispose: () => {
        trainer.dispose();
        model.dispose();
        train.images.dispose();
        train.labels.dispose();
      },
    };
  };
  const alone = await stepper();
  const expected: number[] = [];
  for (let step = 0; step < 12; step++) expected.push(await alone.step('off'));
  alone.dispose();
  const [a, b] = [await stepper(), await stepper()];
  const got: number[] = [];
  for (let step = 0; step < 5; step++) await a.step(graphs);
  for (let step = 0; step < 5; step++) got.push(await b.step(graphs));
  a.dispose(); // its graphs go, and with them what libtorch kept for their capture stream
  // Memory the allocator hands out again, filled with NaN: a graph of B still writing into A's freed cuBLAS
  // workspace (their capture stream once was one) would read it back
  const fillers = [1, 4, 8, 16, 32, 32, 32, 64].map((mib) =>
    tensor(new Float32Array((mib << 20) / 4).fill(Number.NaN), [(mib << 20) / 4], { device }),
  );
  for (let step = 5; step < 12; step++) got.push(await b.step(graphs));
  b.dispose();
  for (const filler of fillers) filler.dispose();
  const same = got.every((loss, i) => loss === expected[i]);
  console.log(`two trainers: B beside A, A disposed after B's 5th step: ${got.join(', ')}`);
  console.log(`two trainers: B alone, eager:                          ${expected.join(', ')}`);
  console.log(`two trainers: ${same ? 'identical' : 'DIFFERENT'}`);
  return same;
}

async function main(): Promise<number> {
  const fp32 = await check('fp32');
  const bf16 = await check('bf16');
  const own = await checkOwnLoop();
  const two = await checkTwoTrainers();
  return fp32 && bf16 && own && two ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
