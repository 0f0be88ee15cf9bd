// CPU benchmark: our PACE training step, baseline step and evaluation against a PyTorch eager reference of the
// same steps (bench/reference/pace_step_reference.py, Debian's python3-torch: the same libtorch build), run
// alternately in one invocation with the same threads, model configuration and batch. Not part of `npm test`.
//
// Usage: npm run bench:cpu -- [--rounds 5] [--models vit_small_patch16_224,vit_tiny_patch16_224]
//                             [--strategy auto|per-row|stacked|unfused] [--json bench/results/cpu.json]
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { doctor, paceLinearStrategy, PaceLinearStrategySchema, setPaceLinearStrategy, threads } from 'pace-peft';

import {
  commands,
  median,
  Ours,
  Reference,
  referenceConfig,
  referencePython,
  timeAlternately,
  writeSummary,
  type Command,
  type Setup,
} from './step-timing';

const setup: Setup = {
  batchSize: 8,
  evalBatchSize: 32,
  rank: 10,
  sigma: 1.0,
  lambda: 1.0,
  dropPathRate: 0.1,
  numClasses: 100,
};

const imagesPerCall: Record<Command, number> = {
  pace: setup.batchSize,
  baseline: setup.batchSize,
  eval: setup.evalBatchSize,
};

async function benchmarkModel(name: string, rounds: number, python: string) {
  const ours = await Ours.create(name, setup);
  const spec = ours.model.spec;
  if (spec.family !== 'vit') throw new Error(`the CPU reference implements ViT only, not ${name}`);
  const reference = new Reference(python);
  const ready = await reference.start(referenceConfig(spec, setup, { threads: threads().intraOp }));
  const all = await timeAlternately(
    { ours: (c) => ours.time(c), reference: (c) => reference.time(c) },
    commands,
    rounds,
    name,
  );
  const times = { ours: all.ours, reference: all.reference };
  reference.stop();
  ours.dispose();

  const rows = commands.map((command) => {
    const oursMs = median(times.ours[command]);
    const referenceMs = median(times.reference[command]);
    return {
      step: command,
      oursMs: Number(oursMs.toFixed(1)),
      referenceMs: Number(referenceMs.toFixed(1)),
      ratio: Number((referenceMs / oursMs).toFixed(2)),
      oursImagesPerSecond: Number(((imagesPerCall[command] * 1000) / oursMs).toFixed(2)),
      referenceImagesPerSecond: Number(((imagesPerCall[command] * 1000) / referenceMs).toFixed(2)),
      oursAllMs: times.ours[command].map((t) => Number(t.toFixed(1))),
      referenceAllMs: times.reference[command].map((t) => Number(t.toFixed(1))),
    };
  });
  return { model: name, referenceTorch: ready.torch, referenceThreads: ready.threads, rows };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      models: { type: 'string', default: 'vit_small_patch16_224,vit_tiny_patch16_224' },
      strategy: { type: 'string', default: 'auto' },
      json: { type: 'string', default: path.join('bench', 'results', 'cpu.json') },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
  setPaceLinearStrategy(PaceLinearStrategySchema.parse(values.strategy));
  const python = referencePython();
  const report = doctor();
  const results = [];
  for (const name of values.models.split(',')) results.push(await benchmarkModel(name, rounds, python));

  const summary = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${report.threads.available} CPU(s) available`,
    torch: report.torchVersion,
    blas: report.blas.kind,
    threads: threads().intraOp,
    paceLinearStrategy: paceLinearStrategy(),
    rounds,
    setup,
    results,
  };
  for (const result of results) {
    console.log(
      `\n${result.model} (batch ${setup.batchSize}, ${summary.threads} threads, libtorch ${summary.torch} both; reference torch ${result.referenceTorch})`,
    );
    console.log('step       ours ms   reference ms   ratio   ours img/s   reference img/s');
    for (const row of result.rows) {
      console.log(
        `${row.step.padEnd(10)} ${row.oursMs.toFixed(1).padStart(8)}   ${row.referenceMs.toFixed(1).padStart(12)}   ${row.ratio.toFixed(2).padStart(5)}×   ${row.oursImagesPerSecond.toFixed(2).padStart(10)}   ${row.referenceImagesPerSecond.toFixed(2).padStart(15)}`,
      );
    }
  }
  writeSummary(values.json, summary);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
