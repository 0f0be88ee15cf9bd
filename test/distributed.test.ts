// Data-parallel training over torch.distributed's Gloo group, two processes on this machine's loopback.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { createModel, loadTensors, saveTensors, tensor, Trainer, type Tensor } from '../lib';
import { makeTempDir, repoRoot } from './support/paths';
import { colourData, tinyVit } from './support/synthetic';

const temp = makeTempDir('distributed');
afterAll(() => temp.cleanup());

const cli = path.join(repoRoot, 'dist', 'cli.js');
const childEnv = { ...process.env, PACE_LIB: path.join(repoRoot, 'dist'), OMP_NUM_THREADS: '1' };

interface Finished {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `pace launch` with its arguments, to completion. */
function paceLaunch(args: string[], env: NodeJS.ProcessEnv = childEnv): Promise<Finished> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, 'launch', ...args], { env, cwd: temp.dir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

async function adapterValues(file: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await loadTensors(file);
  return new Map(Object.entries(tensors).map(([name, t]) => [name, Float32Array.from(t.data() as Float32Array)]));
}

describe('two ranks of batch B/2 take the steps one process takes with batch B', () => {
  const batch = 8;
  const steps = 4;
  const dir = path.join(temp.dir, 'steps');
  const spec = { ...tinyVit };
  const trainerOptions = { optimizer: { lr: 1e-2, clipGradNorm: 1 }, pace: { sigma: 0.5, lambda: 0.5 }, seed: 3 };
  const single: { totalLoss: number; clsLoss: number; paceLoss: number; gradNorm?: number }[] = [];
  let launched: Finished;

  beforeAll(async () => {
    fs.mkdirSync(dir, { recursive: true });
    const base = path.join(dir, 'base.safetensors');
    const init = path.join(dir, 'init.safetensors');
    {
      using backbone = await createModel(spec, { seed: 11 });
      await backbone.saveWeights(base);
      backbone.addAdapters({ rank: 4 });
      await backbone.saveAdapters(init);
    }
    // One process: draw the noise, keep each step's batch and draws for the ranks to replay.
    using model = await createModel(spec, { pretrained: base });
    model.addAdapters({ rank: 4 });
    await model.loadAdapters(init);
    const trainer = new Trainer(model, trainerOptions);
    const { images, labels } = colourData(batch * steps, 5);
    for (let k = 0; k < steps; k++) {
      const x = tensor(images.slice(k * batch * 768, (k + 1) * batch * 768), [batch, 3, 16, 16]);
      const y = tensor(labels.slice(k * batch, (k + 1) * batch));
      single.push(await trainer.trainStep(x, y, { diagnostics: true }));
      const noise: Record<string, Tensor> = {};
      for (const [name, draw] of Object.entries(trainer.lastNoise())) noise[`noise.${name}`] = draw;
      await saveTensors(path.join(dir, `step${k}.safetensors`), { images: x, targets: y, ...noise });
      await model.saveAdapters(path.join(dir, `single-step${k}.safetensors`));
    }
    const args = { spec, base, init, dir, steps, batch, adapters: { rank: 4 }, trainer: trainerOptions };
    launched = await paceLaunch([
      '--nproc-per-node',
      '2',
      '--',
      process.execPath,
      path.join(__dirname, 'support', 'distributed-child.js'),
      JSON.stringify(args),
    ]);
  }, 120_000);

  test('both ranks finish', () => {
    expect(launched.stderr).toBe('');
    expect(launched.status).toBe(0);
  });

  test('the ranks hold bit-identical parameters after every step', async () => {
    for (let k = 0; k < steps; k++) {
      const zero = fs.readFileSync(path.join(dir, `rank0-step${k}.safetensors`));
      const one = fs.readFileSync(path.join(dir, `rank1-step${k}.safetensors`));
      expect(zero.equals(one)).toBe(true);
    }
  });

  test('losses, gradient norms and parameters equal the single process within float32 round-off', async () => {
    const results = launched.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as (typeof single)[number]);
    expect(results).toHaveLength(2 * steps);
    let worst = 0;
    for (let k = 0; k < steps; k++) {
      // Each rank reports the mean over the ranks: the global batch's loss.
      for (const result of results.filter((_, i) => Math.floor(i / 2) === k)) {
        expect(result.totalLoss).toBeCloseTo(single[k].totalLoss, 5);
        expect(result.clsLoss).toBeCloseTo(single[k].clsLoss, 5);
        expect(result.paceLoss).toBeCloseTo(single[k].paceLoss, 5);
        expect(result.gradNorm! / single[k].gradNorm!).toBeCloseTo(1, 5);
      }
      const expected = await adapterValues(path.join(dir, `single-step${k}.safetensors`));
      const actual = await adapterValues(path.join(dir, `rank0-step${k}.safetensors`));
      for (const [name, values] of expected) {
        const got = actual.get(name)!;
        for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(got[i] - values[i]));
      }
    }
    console.log(`largest parameter difference after ${steps} steps: ${worst}`);
    expect(worst).toBeLessThan(1e-5);
  });
});
