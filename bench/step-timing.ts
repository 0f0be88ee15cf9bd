// What the step benchmarks share: our steps and the PyTorch eager reference's (bench/reference/
// pace_step_reference.py, a worker process) timed alternately on the same model configuration and batch.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import { createModel, cudaMemoryStats, tensor, Trainer, type Model, type ModelSpec } from 'pace-peft';

export const commands = ['pace', 'baseline', 'eval'] as const;
export type Command = (typeof commands)[number];
export type Precision = 'fp32' | 'tf32' | 'bf16';

export interface Setup {
  batchSize: number;
  evalBatchSize: number;
  rank: number;
  sigma: number;
  lambda: number;
  dropPathRate: number;
  numClasses: number;
}

/** The device runs' configuration (bench/RESULTS.md): LoRA-mul + VPT-add rank 10, σ = λ = 1, drop path 0.1, 100 classes. */
export function deviceSetup(batch: number): Setup {
  return {
    batchSize: batch,
    evalBatchSize: batch,
    rank: 10,
    sigma: 1.0,
    lambda: 1.0,
    dropPathRate: 0.1,
    numClasses: 100,
  };
}

/** A command-line value that must be a positive integer. */
export function positiveInteger(value: string, flag: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new Error(`${flag} must be a positive integer`);
  return number;
}

// bench/reference/ beside the sources, also when this file runs transpiled from another folder (.device/js).
const referenceScript = path.resolve(
  process.env.PACE_REFERENCE_SCRIPT ?? path.join(__dirname, '..', 'bench', 'reference', 'pace_step_reference.py'),
);

/** The python3 whose torch is the one to compare with (PACE_REFERENCE_PYTHON, python3, /usr/bin/python3). */
export function referencePython(): string {
  const candidates = [process.env.PACE_REFERENCE_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error('no python3 with torch found: `apt-get install python3-torch` (or set PACE_REFERENCE_PYTHON)');
}

/** The reference worker: one process, one model, one command per line. */
export class Reference {
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

  /** Runs one command; returns what the worker printed (`ms`, and for `gemm` the rate). */
  async run(command: string): Promise<Record<string, unknown>> {
    this.child.stdin.write(`${command}\n`);
    return this.reply();
  }

  async time(command: Command): Promise<number> {
    return (await this.run(command)).ms as number;
  }

  stop(): void {
    this.child.stdin.end('quit\n');
  }
}

/**
 * Our side: one model with LoRA-mul + VPT-add adapters, a PACE trainer and a baseline trainer. With `graphs`, the
 * training steps run as whole-step CUDA graphs (trainStep's `stepGraphs: 'auto'`): create() takes the warm-up
 * and capture steps, and a step that did not replay a graph fails the run instead of timing the eager path.
 * On a GPU, `peakBytes` is the most the allocator held for this side at once while it was made and took its first
 * steps (its model, optimizer state and largest step; the sides made before it are subtracted).
 */
export class Ours {
  private constructor(
    readonly model: Model,
    private readonly pace: Trainer,
    private readonly baseline: Trainer,
    private readonly images: ReturnType<typeof tensor>,
    private readonly targets: ReturnType<typeof tensor>,
    private readonly evalImages: ReturnType<typeof tensor>,
    private readonly setup: Setup,
    private readonly precision: Precision,
    private readonly graphs: 'auto' | 'off' | 'rehearse',
  ) {}

  peakBytes?: number;

  static async create(
    name: string,
    setup: Setup,
    device = 'cpu',
    precision: Precision = 'fp32',
    graphs = false,
    warmCommands: readonly ('pace' | 'baseline')[] = ['pace', 'baseline'],
  ): Promise<Ours> {
    const gpu = device === 'cpu' ? undefined : Number(device.split(':')[1] ?? 0);
    const before = gpu === undefined ? undefined : cudaMemoryStats(gpu, { resetPeak: true });
    const model = await createModel(name, { numClasses: setup.numClasses, dropPathRate: setup.dropPathRate });
    model.addAdapters({ type: 'loramul_vptadd', rank: setup.rank });
    if (device !== 'cpu') model.to(device);
    const size = model.spec.imgSize;
    const random = (count: number) => Float32Array.from({ length: count }, () => Math.random() * 2 - 1);
    const images = tensor(random(setup.batchSize * 3 * size * size), [setup.batchSize, 3, size, size], { device });
    const labels = BigInt64Array.from({ length: setup.batchSize }, () =>
      BigInt(Math.floor(Math.random() * setup.numClasses)),
    );
    const targets = tensor(labels, [setup.batchSize]);
    const evalImages = tensor(random(setup.evalBatchSize * 3 * size * size), [setup.evalBatchSize, 3, size, size], {
      device,
    });
    const pace = new Trainer(model, { pace: { sigma: setup.sigma, lambda: setup.lambda }, precision });
    const baseline = new Trainer(model, { precision });
    // Rehearsed on a machine without a GPU: the graph path with its eager stand-in.
    const mode = graphs ? (device === 'cpu' ? 'rehearse' : 'auto') : 'off';
    const side = new Ours(model, pace, baseline, images, targets, evalImages, setup, precision, mode);
    // Untimed first steps: the allocator's peak, and with graphs the warm-ups and the capture.
    try {
      for (let i = 0; i < (graphs ? 5 : 1); i++) for (const command of warmCommands) await side.step(command);
    } catch (error) {
      side.dispose(); // a side left out must not hold its GPU memory through the others' runs
      throw error;
    }
    if (before) side.peakBytes = cudaMemoryStats(gpu!)!.peakAllocatedBytes - before.allocatedBytes;
    return side;
  }

  private async step(command: 'pace' | 'baseline'): Promise<void> {
    const result = await (command === 'pace' ? this.pace : this.baseline).trainStep(this.images, this.targets, {
      stepGraphs: this.graphs,
    });
    if (!Number.isFinite(result.totalLoss)) throw new Error(`${command} step: loss ${result.totalLoss}`);
    if (this.graphs !== 'off' && result.graph?.startsWith('eager'))
      throw new Error(`${command} step ran ${result.graph}`);
    this.graphed = result.graph;
  }

  /** How the last training step ran with graphs (`replayed` once they are warm). */
  graphed?: string;

  /** Milliseconds of one command, up to its results on the host (as the reference's `.item()`). */
  async time(command: Command): Promise<number> {
    const start = performance.now();
    if (command === 'eval') {
      this.model.eval();
      using logits = await this.model.forward(this.evalImages, { precision: this.precision });
      if (logits.toFloat32Array().length !== this.setup.evalBatchSize * this.setup.numClasses)
        throw new Error('unexpected logits');
    } else {
      await this.step(command);
      if (this.graphs !== 'off' && this.graphed !== 'replayed')
        throw new Error(`a timed ${command} step was ${this.graphed}`);
    }
    return performance.now() - start;
  }

  dispose(): void {
    this.images.dispose();
    this.targets.dispose();
    this.evalImages.dispose();
    // The trainers hold the model's native state too (and their optimizer state and graphs): freed first.
    this.pace.dispose();
    this.baseline.dispose();
    this.model.dispose();
  }
}

/** Writes a benchmark's JSON summary (creating its folder) and says where. */
export function writeSummary(file: string, summary: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The reference configuration of a model spec (our own ViT layout, or a timm model by name). */
export function referenceConfig(spec: ModelSpec, setup: Setup, extra: Record<string, unknown>) {
  return {
    ...setup,
    imgSize: spec.imgSize,
    patchSize: spec.patchSize,
    embedDim: spec.embedDim,
    depth: spec.family === 'vit' ? spec.depth : undefined,
    numHeads: spec.numHeads,
    ...extra,
  };
}

/**
 * Times each command `rounds` times on every side, alternating which side goes first per round so neither always
 * runs on a cache the other just warmed. Each command is timed in its own block of rounds, after one untimed call
 * per side, as a training loop runs its steps back to back: interleaving the commands made the reference's PACE
 * step re-fault about 100 MB of pages its allocator had handed back during the other commands (16,000–35,000
 * minor faults a step against 2,000–23,000 back to back on the CPU), which no training loop pays.
 */
export async function timeAlternately(
  sides: Record<string, (command: Command) => Promise<number>>,
  which: readonly Command[],
  rounds: number,
  label: string,
): Promise<Record<string, Record<Command, number[]>>> {
  const names = Object.keys(sides);
  const times: Record<string, Record<Command, number[]>> = {};
  for (const name of names) times[name] = { pace: [], baseline: [], eval: [] };
  for (const command of which) {
    for (const name of names) await sides[name](command);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? names : [...names].reverse();
      for (const name of order) times[name][command].push(await sides[name](command));
    }
    process.stderr.write(`${label}: ${command}, ${rounds} rounds\n`);
  }
  return times;
}
