// Device benchmark (bench/device.sh, on the lent GPU): our PACE and baseline steps in fp32 (TF32 off), tf32 and
// bf16, and bf16 as whole-step CUDA graphs, against the PyTorch reference (bench/reference/pace_step_reference.py
// with the machine's torch and timm) in float32 as the paper's code runs, under bf16 autocast as a strong user
// would, and compiled (torch.compile, --compile-mode, max-autotune by default; fused AdamW) under bf16 autocast,
// alternating in one run, batch 64 (128 after PACE's duplication). Compile times are reported apart; the timed
// steps are the steady state. Prints ms/step, images/s, ratios, each side's peak GPU memory and, for ViTs, the
// fraction of the bf16 floor: the step's matrix arithmetic (bench/pace-flops.ts; ViT-B/16: 340.7 GFLOP per image
// as computed with [W0; ΔW] stacked, 208.3 for the least formulation) at the card's measured bf16 GEMM rate.
//
// Usage: node .device/js/device-bench.js [--models vit_base_patch16_224,swin_base_patch4_window7_224]
//        [--batch 64] [--rounds 5] [--compile-mode max-autotune|default|none] [--json bench/results/device.json]
//        [--commands pace,baseline] [--ours fp32,tf32,bf16,bf16-graphs]
import path from 'node:path';
import { parseArgs } from 'node:util';

import { doctor, type ModelSpec } from 'pace-peft';

import {
  deviceSetup,
  median,
  positiveInteger,
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
import { vitPaceStepFlops } from './pace-flops';

const ourSides: { name: string; precision: Precision; graphs: boolean }[] = [
  { name: 'fp32', precision: 'fp32', graphs: false },
  { name: 'tf32', precision: 'tf32', graphs: false },
  { name: 'bf16', precision: 'bf16', graphs: false },
  { name: 'bf16-graphs', precision: 'bf16', graphs: true },
];
const referenceSides = [
  { name: 'torch fp32', precision: 'fp32', compile: false },
  { name: 'torch bf16', precision: 'bf16', compile: false },
  { name: 'torch bf16 compiled', precision: 'bf16', compile: true },
] as const;

interface Options {
  device: string;
  reference: 'timm' | 'own';
  compileMode: string; // 'none': no compiled side
  commands: ('pace' | 'baseline')[];
  ours: string[]; // names from ourSides
}

async function benchmarkModel(name: string, setup: Setup, rounds: number, python: string, options: Options) {
  const sides: Record<string, (command: Command) => Promise<number>> = {};
  const peakBytes: Record<string, number | undefined> = {};
  const ours: Ours[] = [];
  const references: { label: string; reference: Reference }[] = [];
  let gemmTflops = 0;
  let referenceTorch = '';
  const compileSeconds: Record<string, unknown> = {};
  const failedSides: Record<string, string> = {};
  let spec!: ModelSpec;
  let times: Awaited<ReturnType<typeof timeAlternately>>;
  try {
    for (const { name: which, precision, graphs } of ourSides) {
      if (!options.ours.includes(which)) continue;
      const label = `ours ${precision}${graphs ? ' graphs' : ''}`;
      let side: Ours;
      try {
        side = await Ours.create(name, setup, options.device, precision, graphs, options.commands);
      } catch (error) {
        // One side that cannot run (a capture refused, say) is reported; the others are still measured.
        failedSides[label] = error instanceof Error ? error.message : String(error);
        console.error(`${name}: ${label} left out: ${failedSides[label]}`);
        continue;
      }
      ours.push(side);
      sides[label] = (c) => side.time(c);
      peakBytes[label] = side.peakBytes;
    }
    if (ours.length === 0) throw new Error(`${name}: none of our sides could run (${JSON.stringify(failedSides)})`);
    spec = structuredClone(ours[0].model.spec);
    for (const { name: label, precision, compile } of referenceSides) {
      if (compile && options.compileMode === 'none') continue;
      const reference = new Reference(python);
      references.push({ label, reference });
      const started = Date.now();
      const ready = await reference.start(
        referenceConfig(spec, setup, {
          threads: 16,
          timm: options.reference === 'timm' ? name : undefined,
          device: options.device,
          precision,
          compile: compile ? options.compileMode : undefined,
          commands: options.commands,
        }),
      );
      referenceTorch = String(ready.torch);
      if (compile) {
        compileSeconds[label] = ready.compileSeconds;
        console.error(`${name}: ${label} ready after ${((Date.now() - started) / 1000).toFixed(0)} s`);
      }
      sides[label] = (c) => reference.time(c);
    }
    if (options.device !== 'cpu') gemmTflops = (await references[0].reference.run('gemm')).tflops as number;
    times = await timeAlternately(sides, options.commands, rounds, name);
    for (const { label, reference } of references)
      peakBytes[label] = ((await reference.run('peak')).bytes as number | null) ?? undefined;
  } finally {
    // Also on failure: a reference left running would keep this process alive.
    for (const { reference } of references) reference.stop();
    for (const side of ours) side.dispose();
  }

  const rows = [];
  for (const command of options.commands) {
    const ms = Object.fromEntries(Object.entries(times).map(([side, t]) => [side, median(t[command])]));
    // The step's matrix arithmetic at the card's measured GEMM rate: FLOP over FLOP per ms (TFLOP/s × 1e9).
    const flops =
      command === 'pace' && spec.family === 'vit' && gemmTflops > 0
        ? vitPaceStepFlops(spec, setup.batchSize, setup.rank)
        : undefined;
    const floorMs = flops && {
      stacked: flops.stacked / (gemmTflops * 1e9),
      minimal: flops.minimal / (gemmTflops * 1e9),
    };
    for (const side of Object.keys(sides)) {
      rows.push({
        step: command,
        side,
        ms: Number(ms[side].toFixed(2)),
        imagesPerSecond: Number(((setup.batchSize * 1000) / ms[side]).toFixed(1)),
        vsTorchFp32: Number((ms['torch fp32'] / ms[side]).toFixed(2)),
        vsTorchBf16: Number((ms['torch bf16'] / ms[side]).toFixed(2)),
        vsTorchCompiled:
          ms['torch bf16 compiled'] === undefined
            ? undefined
            : Number((ms['torch bf16 compiled'] / ms[side]).toFixed(2)),
        peakMiB: peakBytes[side] === undefined ? undefined : Math.round(peakBytes[side] / 2 ** 20),
        floorFraction: floorMs && Number((floorMs.stacked / ms[side]).toFixed(3)),
        minimalFloorFraction: floorMs && Number((floorMs.minimal / ms[side]).toFixed(3)),
        allMs: times[side][command].map((t) => Number(t.toFixed(2))),
      });
    }
  }
  return {
    model: name,
    referenceTorch,
    gemmBf16Tflops: Number(gemmTflops.toFixed(1)),
    compileSeconds,
    failedSides,
    rows,
  };
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
      'compile-mode': { type: 'string', default: 'max-autotune' },
      // To fit a short lease: the steps to time, and which of our sides to build.
      commands: { type: 'string', default: 'pace,baseline' },
      ours: { type: 'string', default: ourSides.map((side) => side.name).join(',') },
    },
  });
  if (values.reference !== 'timm' && values.reference !== 'own') throw new Error("--reference must be 'timm' or 'own'");
  const commands = values.commands.split(',');
  for (const command of commands)
    if (command !== 'pace' && command !== 'baseline')
      throw new Error(`--commands: '${command}' is not pace or baseline`);
  const ours = values.ours.split(',');
  for (const side of ours)
    if (!ourSides.some((known) => known.name === side))
      throw new Error(`--ours: '${side}' is not one of ${ourSides.map((known) => known.name).join(', ')}`);
  const options: Options = {
    device: values.device,
    reference: values.reference,
    compileMode: values['compile-mode'],
    commands: commands as Options['commands'],
    ours,
  };
  const rounds = positiveInteger(values.rounds, '--rounds');
  const setup = deviceSetup(positiveInteger(values.batch, '--batch'));
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
    for (const [side, reason] of Object.entries(result.failedSides)) console.log(`${side}: not measured (${reason})`);
    if (Object.keys(result.compileSeconds).length)
      console.log(`compile seconds (first three calls of each command): ${JSON.stringify(result.compileSeconds)}`);
    console.log(
      'step      side                  ms/step   img/s  ×torch-fp32 ×torch-bf16 ×compiled  peak MiB  floor (stacked / least)',
    );
    const ratio = (x: number | undefined) => (x === undefined ? '-' : `${x.toFixed(2)}×`).padStart(11);
    for (const row of result.rows) {
      console.log(
        `${row.step.padEnd(9)} ${row.side.padEnd(20)} ${row.ms.toFixed(1).padStart(8)} ${row.imagesPerSecond.toFixed(0).padStart(7)} ${ratio(row.vsTorchFp32)} ${ratio(row.vsTorchBf16)} ${ratio(row.vsTorchCompiled)} ${String(row.peakMiB ?? '-').padStart(9)}  ${row.floorFraction === undefined ? '' : `${(row.floorFraction * 100).toFixed(0)}% / ${((row.minimalFloorFraction ?? 0) * 100).toFixed(0)}%`}`,
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
