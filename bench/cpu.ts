// CPU benchmark: our PACE training step, baseline step and evaluation against the strongest PyTorch form of the
// same steps (bench/reference/pace_step_reference.py: adapters merged wherever no noise is applied, as the
// official PACE code runs; Debian's python3-torch, the same libtorch build), in float32 and in bf16 (ours:
// precision 'bf16'; the reference: torch.autocast('cpu', dtype=torch.bfloat16)), all four timed alternately in
// one invocation with the same threads, model configuration and batch. Not part of `npm test`.
//
// Usage: npm run bench:cpu -- [--rounds 5] [--models vit_small_patch16_224,vit_tiny_patch16_224]
//                             [--precisions fp32,bf16] [--strategy auto|per-row|stacked|unfused]
//                             [--unmerged-reference] [--json bench/results/cpu.json]
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
  type Precision,
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

type Side = { ours: Ours } | { reference: Reference };

async function benchmarkModel(
  name: string,
  rounds: number,
  python: string,
  precisions: Precision[],
  mergedReference: boolean,
) {
  const sides = new Map<string, Side>();
  let referenceTorch = '';
  for (const precision of precisions) {
    const ours = await Ours.create(name, setup, 'cpu', precision);
    const spec = ours.model.spec;
    if (spec.family !== 'vit') throw new Error(`the CPU reference implements ViT only, not ${name}`);
    const reference = new Reference(python);
    const ready = await reference.start(
      referenceConfig(spec, setup, { threads: threads().intraOp, precision, merge: mergedReference }),
    );
    referenceTorch = String(ready.torch);
    sides.set(`ours ${precision}`, { ours });
    sides.set(`reference ${precision}`, { reference });
  }
  const timers = Object.fromEntries(
    [...sides].map(([label, side]) => [
      label,
      (command: Command) => ('ours' in side ? side.ours.time(command) : side.reference.time(command)),
    ]),
  );
  const times = await timeAlternately(timers, commands, rounds, name);
  for (const side of sides.values()) {
    if ('ours' in side) side.ours.dispose();
    else side.reference.stop();
  }

  const summarise = (label: string, command: Command) => {
    const ms = median(times[label][command]);
    return {
      ms: Number(ms.toFixed(1)),
      imagesPerSecond: Number(((imagesPerCall[command] * 1000) / ms).toFixed(2)),
      allMs: times[label][command].map((t) => Number(t.toFixed(1))),
    };
  };
  const rows = precisions.flatMap((precision) =>
    commands.map((command) => {
      const ours = summarise(`ours ${precision}`, command);
      const reference = summarise(`reference ${precision}`, command);
      return { precision, step: command, ours, reference, ratio: Number((reference.ms / ours.ms).toFixed(2)) };
    }),
  );
  // Our bf16 step against our own float32 step, when both were timed.
  const bf16Speedup =
    precisions.includes('fp32') && precisions.includes('bf16')
      ? Object.fromEntries(
          commands.map((command) => [
            command,
            Number((median(times['ours fp32'][command]) / median(times['ours bf16'][command])).toFixed(2)),
          ]),
        )
      : undefined;
  return { model: name, referenceTorch, mergedReference, rows, bf16Speedup };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      models: { type: 'string', default: 'vit_small_patch16_224,vit_tiny_patch16_224' },
      strategy: { type: 'string', default: 'auto' },
      precisions: { type: 'string', default: 'fp32,bf16' },
      'unmerged-reference': { type: 'boolean', default: false },
      json: { type: 'string', default: path.join('bench', 'results', 'cpu.json') },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
  setPaceLinearStrategy(PaceLinearStrategySchema.parse(values.strategy));
  const python = referencePython();
  const report = doctor();
  const results = [];
  const precisions = values.precisions.split(',').map((p) => {
    if (p !== 'fp32' && p !== 'bf16') throw new Error(`--precisions: '${p}' is not fp32 or bf16`);
    return p as Precision;
  });
  const merged = !values['unmerged-reference'];
  for (const name of values.models.split(',')) {
    results.push(await benchmarkModel(name, rounds, python, precisions, merged));
  }

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
  const form = merged ? 'adapters merged where no noise, as the official code' : 'UNMERGED (the weaker form)';
  for (const result of results) {
    console.log(
      `\n${result.model} (batch ${setup.batchSize}, ${summary.threads} threads, libtorch ${summary.torch} both; reference torch ${result.referenceTorch}, ${form}; bf16 = autocast)`,
    );
    console.log('precision  step       ours ms   reference ms   ratio   ours img/s   reference img/s');
    for (const row of result.rows) {
      console.log(
        `${row.precision.padEnd(10)} ${row.step.padEnd(10)} ${row.ours.ms.toFixed(1).padStart(8)}   ${row.reference.ms.toFixed(1).padStart(12)}   ${row.ratio.toFixed(2).padStart(5)}×   ${row.ours.imagesPerSecond.toFixed(2).padStart(10)}   ${row.reference.imagesPerSecond.toFixed(2).padStart(15)}`,
      );
    }
    if (result.bf16Speedup) {
      const parts = commands.map((command) => `${command} ${result.bf16Speedup?.[command].toFixed(2)}×`);
      console.log(`ours bf16 against ours fp32: ${parts.join(', ')}`);
    }
  }
  writeSummary(values.json, summary);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
