// On the lent GPU machine (bench/device.sh): where one bf16 PACE step's time goes, ours (eager, as a whole-step
// CUDA graph, and as a graph with the GELU and residual adds apart from the noisy linears' epilogue kernel, which
// measures that fusion) against the PyTorch reference (bf16 autocast eager, and torch.compile'd with --compile-mode: off by
// default, as compiling costs minutes of device time the benchmark spends already).
// Each side takes its warm-up steps, then `--steps` steps run under the profiler (Trainer.profileSteps; torch.
// profiler in the reference worker); bench/profile-summary.ts sums each trace by kind of kernel, with the GPU's
// idle share and the kernels and launches per step. Traces and the summary JSON go to --out.
//
// Usage: node .device/js/device-profile.js [--models vit_base_patch16_224,swin_base_patch4_window7_224]
//        [--batch 64] [--steps 3] [--compile-mode none|max-autotune|default] [--out bench/out/profile]
// Rehearse here (no GPU, no Kineto: our sides are reported as refused): ... --device cpu --reference own
//        --models vit_tiny_patch16_224 --batch 2
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { createModel, releaseCachedMemory, setFusedEpilogues, tensor, Trainer } from 'pace-peft';

import { formatSummary, readTrace, summarizeTrace, type TraceSummary } from './profile-summary';
import { deviceSetup, positiveInteger, Reference, referenceConfig, referencePython, type Setup } from './step-timing';

interface Side {
  label: string;
  summary?: TraceSummary;
  refused?: string;
}

async function ourSides(
  name: string,
  setup: Setup,
  device: string,
  steps: number,
  out: string,
): Promise<{ sides: Side[]; spec: Parameters<typeof referenceConfig>[0] }> {
  const model = await createModel(name, { numClasses: setup.numClasses, dropPathRate: setup.dropPathRate });
  model.addAdapters({ type: 'loramul_vptadd', rank: setup.rank });
  if (device !== 'cpu') model.to(device);
  const size = model.spec.imgSize;
  const count = setup.batchSize * 3 * size * size;
  const images = tensor(
    Float32Array.from({ length: count }, (_, i) => Math.sin(i * 0.001)),
    [setup.batchSize, 3, size, size],
    { device },
  );
  const labels = tensor(BigInt64Array.from({ length: setup.batchSize }, (_, i) => BigInt(i % setup.numClasses)));
  const sides: Side[] = [];
  const spec = model.spec;
  const kinds = [
    { graphs: false, fused: true },
    { graphs: true, fused: true },
    { graphs: true, fused: false },
  ];
  try {
    for (const { graphs, fused } of kinds) {
      const label = `ours bf16${graphs ? ' graphs' : ''}${fused ? '' : ' epilogues-apart'}`;
      const stepGraphs = graphs ? (device === 'cpu' ? 'rehearse' : 'auto') : 'off';
      setFusedEpilogues(fused); // read when a step runs (and is captured): each kind gets its own trainer
      // Disposed after its side: its graphs' pools and moments would otherwise stay until a collection (the
      // 2026-12-04 run held 128 GiB by Swin's reference, which then ran out of memory).
      const trainer = new Trainer(model, {
        pace: { sigma: setup.sigma, lambda: setup.lambda },
        precision: 'bf16',
      });
      try {
        for (let i = 0; i < 5; i++) await trainer.trainStep(images, labels, { stepGraphs }); // warm-ups, capture
        const trace = path.join(out, `${name}.${label.replaceAll(' ', '-')}.json`);
        try {
          const results = await trainer.profileSteps(images, labels, { trace, steps, stepGraphs });
          if (graphs && results.some((r) => r.graph !== 'replayed'))
            throw new Error(`a profiled graph step ran ${results.map((r) => r.graph).join(', ')}`);
          sides.push({ label, summary: summarizeTrace(readTrace(trace), steps) });
        } catch (error) {
          if (!/without Kineto/.test(String(error))) throw error;
          sides.push({ label, refused: String(error) });
        }
      } finally {
        trainer.dispose();
      }
    }
  } finally {
    setFusedEpilogues(true);
    images.dispose();
    labels.dispose();
    model.dispose();
    releaseCachedMemory(); // the reference runs in another process, on the same GPU
  }
  return { sides, spec };
}

async function referenceSides(
  name: string,
  setup: Setup,
  options: { device: string; reference: string; compileMode: string; steps: number; out: string },
  spec: Parameters<typeof referenceConfig>[0],
): Promise<Side[]> {
  const sides: Side[] = [];
  for (const compile of [false, true]) {
    if (compile && options.compileMode === 'none') continue;
    const label = `torch bf16${compile ? ' compiled' : ''}`;
    const reference = new Reference(referencePython());
    try {
      await reference.start(
        referenceConfig(spec, setup, {
          threads: 16,
          timm: options.reference === 'timm' ? name : undefined,
          device: options.device,
          precision: 'bf16',
          compile: compile ? options.compileMode : undefined,
        }),
      );
      await reference.run('pace'); // warm
      const trace = path.resolve(options.out, `${name}.${label.replaceAll(' ', '-')}.json`);
      await reference.run(`profile pace ${options.steps} ${trace}`);
      sides.push({ label, summary: summarizeTrace(readTrace(trace), options.steps) });
    } finally {
      reference.stop();
    }
  }
  return sides;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'vit_base_patch16_224,swin_base_patch4_window7_224' },
      batch: { type: 'string', default: '64' },
      steps: { type: 'string', default: '3' },
      'compile-mode': { type: 'string', default: 'none' },
      out: { type: 'string', default: path.join('bench', 'out', 'profile') },
      device: { type: 'string', default: 'cuda' },
      reference: { type: 'string', default: 'timm' },
    },
  });
  const steps = positiveInteger(values.steps, '--steps');
  const batch = positiveInteger(values.batch, '--batch');
  fs.mkdirSync(values.out, { recursive: true });
  const setup = deviceSetup(batch);
  const all: Record<string, Side[]> = {};
  for (const name of values.models.split(',')) {
    const { sides: ours, spec } = await ourSides(name, setup, values.device, steps, values.out);
    const theirs = await referenceSides(
      name,
      setup,
      {
        device: values.device,
        reference: values.reference,
        compileMode: values['compile-mode'],
        steps,
        out: values.out,
      },
      spec,
    );
    all[name] = [...ours, ...theirs];
    console.log(`\n${name}, bf16 PACE step, batch ${batch}`);
    for (const side of all[name])
      console.log(side.summary ? formatSummary(side.label, side.summary) : `${side.label}: ${side.refused}`);
  }
  const file = path.join(values.out, 'profile.json');
  fs.writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), setup, steps, sides: all }, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
