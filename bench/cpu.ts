// CPU benchmark: our PACE training step, baseline step and evaluation against a PyTorch eager reference of the
// same steps (bench/reference/pace_step_reference.py, Debian's python3-torch: the same libtorch build), run
// alternately in one invocation with the same threads, model configuration and batch. Not part of `npm test`.
//
// Usage: npm run bench:cpu -- [--rounds 5] [--models vit_small_patch16_224,vit_tiny_patch16_224]
//                             [--strategy auto|per-row|stacked|unfused] [--json bench/results/cpu.json]
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

import {
  createModel,
  doctor,
  paceLinearStrategy,
  PaceLinearStrategySchema,
  setPaceLinearStrategy,
  tensor,
  threads,
  Trainer,
  type Model,
} from 'pace-peft';

const referenceScript = path.join(__dirname, 'reference', 'pace_step_reference.py');
const commands = ['pace', 'baseline', 'eval'] as const;
type Command = (typeof commands)[number];

interface Setup {
  batchSize: number;
  evalBatchSize: number;
  rank: number;
  sigma: number;
  lambda: number;
  dropPathRate: number;
  numClasses: number;
}

const setup: Setup = {
  batchSize: 8,
  evalBatchSize: 32,
  rank: 10,
  sigma: 1.0,
  lambda: 1.0,
  dropPathRate: 0.1,
  numClasses: 100,
};

// The python3 whose torch is the system libtorch (Debian's python3-torch), not a pyenv shim without torch.
function referencePython(): string {
  const candidates = [process.env.PACE_REFERENCE_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error('no python3 with torch found: `apt-get install python3-torch` (or set PACE_REFERENCE_PYTHON)');
}

class Reference {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;

  constructor(python: string) {
    this.child = spawn(python, [referenceScript], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async reply(): Promise<Record<string, unknown>> {
    const next = await this.lines.next();
    if (next.done) throw new Error('the reference process ended early (see its stderr above)');
    const parsed = JSON.parse(next.value) as Record<string, unknown>;
    if (typeof parsed.error === 'string') throw new Error(`reference: ${parsed.error}`);
    return parsed;
  }

  async start(config: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin.write(`${JSON.stringify(config)}\n`);
    return this.reply();
  }

  async time(command: Command): Promise<number> {
    this.child.stdin.write(`${command}\n`);
    return (await this.reply()).ms as number;
  }

  stop(): void {
    this.child.stdin.end('quit\n');
  }
}

class Ours {
  private constructor(
    private readonly model: Model,
    private readonly pace: Trainer,
    private readonly baseline: Trainer,
    private readonly images: ReturnType<typeof tensor>,
    private readonly targets: ReturnType<typeof tensor>,
    private readonly evalImages: ReturnType<typeof tensor>,
  ) {}

  static async create(name: string): Promise<Ours> {
    const model = await createModel(name, { numClasses: setup.numClasses, dropPathRate: setup.dropPathRate });
    model.addAdapters({ type: 'loramul_vptadd', rank: setup.rank });
    const size = model.spec.imgSize;
    const random = (count: number) => Float32Array.from({ length: count }, () => Math.random() * 2 - 1);
    const images = tensor(random(setup.batchSize * 3 * size * size), [setup.batchSize, 3, size, size]);
    const labels = BigInt64Array.from({ length: setup.batchSize }, () =>
      BigInt(Math.floor(Math.random() * setup.numClasses)),
    );
    const targets = tensor(labels, [setup.batchSize]);
    const evalImages = tensor(random(setup.evalBatchSize * 3 * size * size), [setup.evalBatchSize, 3, size, size]);
    const pace = new Trainer(model, { pace: { sigma: setup.sigma, lambda: setup.lambda } });
    const baseline = new Trainer(model);
    return new Ours(model, pace, baseline, images, targets, evalImages);
  }

  async time(command: Command): Promise<number> {
    const start = performance.now();
    if (command === 'eval') {
      this.model.eval();
      using logits = await this.model.forward(this.evalImages);
      if (logits.shape[0] !== setup.evalBatchSize) throw new Error('unexpected logits');
    } else {
      const result = await (command === 'pace' ? this.pace : this.baseline).trainStep(this.images, this.targets);
      if (!Number.isFinite(result.totalLoss)) throw new Error(`${command} step: loss ${result.totalLoss}`);
    }
    return performance.now() - start;
  }

  dispose(): void {
    this.images.dispose();
    this.targets.dispose();
    this.evalImages.dispose();
    this.model.dispose();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const imagesPerCall: Record<Command, number> = {
  pace: setup.batchSize,
  baseline: setup.batchSize,
  eval: setup.evalBatchSize,
};

async function benchmarkModel(name: string, rounds: number, python: string) {
  const ours = await Ours.create(name);
  const spec = (await createModel(name)).spec;
  if (spec.family !== 'vit') throw new Error(`the reference implements ViT only, not ${name}`);
  const reference = new Reference(python);
  const ready = await reference.start({
    ...setup,
    threads: threads().intraOp,
    imgSize: spec.imgSize,
    patchSize: spec.patchSize,
    embedDim: spec.embedDim,
    depth: spec.depth,
    numHeads: spec.numHeads,
  });
  const times: Record<'ours' | 'reference', Record<Command, number[]>> = {
    ours: { pace: [], baseline: [], eval: [] },
    reference: { pace: [], baseline: [], eval: [] },
  };
  // One untimed call of each warms allocators, thread pools and BLAS buffers on both sides.
  for (const command of commands) {
    await ours.time(command);
    await reference.time(command);
  }
  for (let round = 0; round < rounds; round++) {
    for (const command of commands) {
      // Alternate who goes first, so neither side always runs on a cache the other just warmed or cooled.
      if (round % 2 === 0) {
        times.ours[command].push(await ours.time(command));
        times.reference[command].push(await reference.time(command));
      } else {
        times.reference[command].push(await reference.time(command));
        times.ours[command].push(await ours.time(command));
      }
    }
    process.stderr.write(`${name}: round ${round + 1}/${rounds}\n`);
  }
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
  fs.mkdirSync(path.dirname(values.json), { recursive: true });
  fs.writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`\nwritten to ${values.json}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
