// Device benchmark (bench/device.sh, on the lent GPU): our PACE and baseline steps in fp32 (TF32 off), tf32 and
// bf16 against the PyTorch eager reference (bench/reference/pace_step_reference.py with the machine's torch and
// timm) in float32 as the paper's code runs and under bf16 autocast as a strong user would, alternating in one
// run, batch 64 (128 after PACE's duplication). Prints ms/step, images/s, ratios and, for ViT-B/16, the
// fraction of the bf16 FLOP floor (≈ 172 GFLOP per image per PACE step at the card's measured bf16 GEMM rate).
//
// Usage: node .device/js/device-bench.js [--models vit_base_patch16_224,swin_base_patch4_window7_224]
//        [--batch 64] [--rounds 5] [--json bench/results/device.json]
import path from 'node:path';
import { parseArgs } from 'node:util';

import { doctor } from 'pace-peft';

import {
  median,
  Ours,
  Reference,
  referenceConfig,
  referencePython,
  timeAlternately,
  writeSummary,
  type Command,
  type Precision,
  type Setup,
} from './step-timing';

const paceGflopPerImage: Record<string, number> = { vit_base_patch16_224: 172 };
const ourPrecisions: Precision[] = ['fp32', 'tf32', 'bf16'];
const referencePrecisions = ['fp32', 'bf16'] as const;
const timed: Command[] = ['pace', 'baseline'];

interface Options {
  device: string;
  reference: 'timm' | 'own';
}

async function benchmarkModel(name: string, setup: Setup, rounds: number, python: string, options: Options) {
  const sides: Record<string, (command: Command) => Promise<number>> = {};
  const ours: Ours[] = [];
  for (const precision of ourPrecisions) {
    const side = await Ours.create(name, setup, options.device, precision);
    ours.push(side);
    sides[`ours ${precision}`] = (c) => side.time(c);
  }
  const references: Reference[] = [];
  let gemmTflops = 0;
  let referenceTorch = '';
  for (const precision of referencePrecisions) {
    const reference = new Reference(python);
    references.push(reference);
    const spec = ours[0].model.spec;
    const ready = await reference.start(
      referenceConfig(spec, setup, {
        threads: 16,
        timm: options.reference === 'timm' ? name : undefined,
        device: options.device,
        precision,
      }),
    );
    referenceTorch = String(ready.torch);
    sides[`torch ${precision}`] = (c) => reference.time(c);
  }
  let times: Awaited<ReturnType<typeof timeAlternately>>;
  try {
    if (options.device !== 'cpu') gemmTflops = (await references[0].run('gemm')).tflops as number;
    times = await timeAlternately(sides, timed, rounds, name);
  } finally {
    // Also on failure: a reference left running would keep this process alive.
    for (const reference of references) reference.stop();
    for (const side of ours) side.dispose();
  }

  const rows = [];
  for (const command of timed) {
    const ms = Object.fromEntries(Object.entries(times).map(([side, t]) => [side, median(t[command])]));
    for (const side of Object.keys(sides)) {
      const floorMs =
        command === 'pace' && paceGflopPerImage[name] && gemmTflops > 0
          ? (paceGflopPerImage[name] * setup.batchSize) / gemmTflops // GFLOP over GFLOP per ms (= TFLOP/s)
          : undefined;
      rows.push({
        step: command,
        side,
        ms: Number(ms[side].toFixed(2)),
        imagesPerSecond: Number(((setup.batchSize * 1000) / ms[side]).toFixed(1)),
        vsTorchFp32: Number((ms['torch fp32'] / ms[side]).toFixed(2)),
        vsTorchBf16: Number((ms['torch bf16'] / ms[side]).toFixed(2)),
        floorFraction: floorMs === undefined ? undefined : Number((floorMs / ms[side]).toFixed(3)),
        allMs: times[side][command].map((t) => Number(t.toFixed(2))),
      });
    }
  }
  return { model: name, referenceTorch, gemmBf16Tflops: Number(gemmTflops.toFixed(1)), rows };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'vit_base_patch16_224,swin_base_patch4_window7_224' },
      batch: { type: 'string', default: '64' },
      rounds: { type: 'string', default: '5' },
      json: { type: 'string', default: path.join('bench', 'results', 'device.json') },
      // For rehearsing on a machine without a GPU: `--device cpu --reference own` (our ViT layout, no timm).
      device: { type: 'string', default: 'cuda' },
      reference: { type: 'string', default: 'timm' },
    },
  });
  if (values.reference !== 'timm' && values.reference !== 'own') throw new Error("--reference must be 'timm' or 'own'");
  const options: Options = { device: values.device, reference: values.reference };
  const rounds = Number(values.rounds);
  const batch = Number(values.batch);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
  if (!Number.isInteger(batch) || batch < 1) throw new Error('--batch must be a positive integer');
  const setup: Setup = {
    batchSize: batch,
    evalBatchSize: batch,
    rank: 10,
    sigma: 1.0,
    lambda: 1.0,
    dropPathRate: 0.1,
    numClasses: 100,
  };
  const report = doctor();
  if (options.device !== 'cpu' && (!report.cuda.built || report.cuda.deviceCount < 1))
    throw new Error('no CUDA device visible to the addon');
  const python = referencePython();
  const results: Awaited<ReturnType<typeof benchmarkModel>>[] = [];
  const torch = report.torchVersion;
  for (const name of values.models.split(',')) {
    const result = await benchmarkModel(name, setup, rounds, python, options);
    results.push(result);
    // Printed as each model finishes, so a run cut short still reports what it measured.
    console.log(
      `\n${result.model}, batch ${setup.batchSize} (${2 * setup.batchSize} after duplication), libtorch ${torch}, reference torch ${result.referenceTorch}, bf16 GEMM ${result.gemmBf16Tflops} TFLOP/s`,
    );
    console.log('step      side         ms/step   img/s    ×torch-fp32  ×torch-bf16  floor');
    for (const row of result.rows) {
      console.log(
        `${row.step.padEnd(9)} ${row.side.padEnd(11)} ${row.ms.toFixed(1).padStart(8)} ${row.imagesPerSecond.toFixed(0).padStart(7)}   ${row.vsTorchFp32.toFixed(2).padStart(9)}×  ${row.vsTorchBf16.toFixed(2).padStart(9)}×  ${row.floorFraction === undefined ? '' : `${(row.floorFraction * 100).toFixed(0)}%`}`,
      );
    }
  }
  const summary = { date: new Date().toISOString(), torch, rounds, setup, results };
  writeSummary(values.json, summary);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
