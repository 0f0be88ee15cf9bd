// The paper's comparisons and ablations beyond the reference's PACE step: PACE across M copies (Fig. 5), PACE_h
// (noise on the whole output h), SAM, the gradient-norm penalty GP and FPA + GP. Each is checked against an
// independent computation: the 2-copy step the reference fixtures pin down, a merged model with the noise folded
// into its weights, and gradients taken by hand at θ and at θ + r·g/‖g‖.
import path from 'node:path';

import {
  createModel,
  disposeTensors,
  loadTensors,
  saveTensors,
  tensor,
  Trainer,
  type Model,
  type Tensor,
  type TensorRecord,
  type TrainerOptions,
} from '../lib';
import { fixture, fixtureAdaptedModel, fixtureIndex, fixtureNoise, fixtureSpec } from './support/fixtures';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('comparisons');
afterAll(() => temp.cleanup());

const name = 'pace_vit_loramul_vptadd';
const fx = fixtureIndex[name];

let io: TensorRecord;
beforeAll(async () => {
  io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
});
afterAll(() => disposeTensors(io));

const adaptedModel = (): Promise<Model> => fixtureAdaptedModel(name);
/** The reference's ε per linear for its two copies ([2B, 1, C] each). */
const referenceNoise = () => fixtureNoise(io);

/** Copy `index` (of `copies`) of a stacked noise tensor, as a float32 array. */
function copyOf(t: Tensor, index: number, copies: number): Float32Array {
  const data = t.toFloat32Array();
  const length = data.length / copies;
  return data.slice(index * length, (index + 1) * length);
}

/** Stacks per-copy arrays into one noise tensor with `like`'s trailing shape. */
function stack(parts: Float32Array[], like: Tensor, copiesInLike: number): Tensor {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.forEach((p, i) => out.set(p, i * p.length));
  const [rows, ...rest] = like.shape;
  return tensor(out, [(rows / copiesInLike) * parts.length, ...rest]);
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

function maxRelativeDifference(a: Record<string, Tensor>, b: Record<string, Tensor>): number {
  let worst = 0;
  let scale = 0;
  for (const [key, value] of Object.entries(b)) {
    const x = a[key].toFloat64Array();
    const y = value.toFloat64Array();
    for (let i = 0; i < y.length; i++) {
      worst = Math.max(worst, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(y[i]));
    }
  }
  return worst / scale;
}

describe('PACE across M copies (the paper’s Fig. 5): the mean of the pairwise consistency terms', () => {
  test('3 copies: loss and gradients equal those assembled from 2-copy steps of the same draws', async () => {
    const two = referenceNoise();
    // Three copies: the reference's two draws and a third, the first copy's ε reversed in sign.
    const copy = (c: number) =>
      Object.fromEntries(
        Object.entries(two).map(([linear, t]) => {
          const first = copyOf(t, 0, 2);
          return [linear, c < 2 ? copyOf(t, c, 2) : first.map((v) => -v)];
        }),
      );
    const copies = [copy(0), copy(1), copy(2)];
    const noiseOf = (order: number[]) =>
      Object.fromEntries(
        Object.keys(two).map((linear) => [
          linear,
          stack(
            order.map((c) => copies[c][linear]),
            two[linear],
            2,
          ),
        ]),
      );
    const lambda = 1;
    const step = async (options: TrainerOptions['pace'], order: number[]) => {
      using model = await adaptedModel();
      const trainer = new Trainer(model, { optimizer: { lr: 0 }, pace: { sigma: fx.sigma, ...options } });
      const result = await trainer.trainStep(io.input, io.target, { noise: noiseOf(order) });
      return { result, gradients: model.gradients() };
    };
    const three = await step({ lambda, copies: 3 }, [0, 1, 2]);
    const pairs = [await step({ lambda }, [0, 1]), await step({ lambda }, [0, 2]), await step({ lambda }, [1, 2])];
    // The pair (1, 2)'s cross-entropy is of copy 1: take it out with a λ = 0 step led by copy 1.
    const clsOfCopy1 = await step({ lambda: 0 }, [1, 2]);
    const meanPace = pairs.reduce((sum, p) => sum + p.result.paceLoss, 0) / 3;
    expect(relative(three.result.paceLoss, meanPace)).toBeLessThan(1e-5);
    expect(three.result.clsLoss).toBeCloseTo(pairs[0].result.clsLoss, 6);
    expect(relative(three.result.totalLoss, three.result.clsLoss + lambda * meanPace)).toBeLessThan(1e-5);
    // ∇ = ∇cls₀ + λ/3 · Σ ∇c_ij, each ∇c_ij a 2-copy step's gradient less its cross-entropy's.
    const cls0 = await step({ lambda: 0 }, [0, 1]);
    const expected: Record<string, Tensor> = {};
    for (const key of Object.keys(three.gradients)) {
      const g0 = cls0.gradients[key].toFloat64Array();
      const g1 = clsOfCopy1.gradients[key].toFloat64Array();
      const [p01, p02, p12] = pairs.map((p) => p.gradients[key].toFloat64Array());
      const combined = g0.map((v, i) => v + (p01[i] - v + (p02[i] - v) + (p12[i] - g1[i])) / 3);
      expected[key] = tensor(Float32Array.from(combined), three.gradients[key].shape);
    }
    expect(maxRelativeDifference(three.gradients, expected)).toBeLessThan(1e-4);
  });

  test('2 copies is the reference step, and copies is refused where there are no copies', async () => {
    using model = await adaptedModel();
    const explicit = await new Trainer(model, {
      optimizer: { lr: 0 },
      pace: { sigma: fx.sigma, lambda: fx.lambda, copies: 2 },
    }).trainStep(io.input, io.target, { noise: referenceNoise() });
    expect(relative(explicit.clsLoss, io.cls_loss.toFloat64Array()[0])).toBeLessThan(1e-5);
    expect(relative(explicit.paceLoss, io.pace_loss.toFloat64Array()[0])).toBeLessThan(1e-5);
    expect(() => new Trainer(model, { pace: { sigma: 1, variant: 'fpa', copies: 3 } })).toThrow(
      'pace.copies other than 2 needs the pace or lazy variant',
    );
    expect(() => new Trainer(model, { pace: { sigma: 1, copies: 1 } } as never)).toThrow(/copies/);
  });
});

/** Mean cross-entropy of float32 logits [B, C] against int64 targets, in float64. */
function crossEntropy(logits: Tensor, targets: Tensor): number {
  const [batch, classes] = logits.shape;
  const values = logits.toFloat64Array();
  const labels = targets.toFloat64Array();
  let sum = 0;
  for (let b = 0; b < batch; b++) {
    const row = values.subarray(b * classes, (b + 1) * classes);
    const max = Math.max(...row);
    const logSum = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    sum += logSum - row[labels[b]];
  }
  return sum / batch;
}

describe('PACE_h (pace.noiseOn: h): noise on the whole output h = W₀x + Δh instead of on Δh', () => {
  test('one linear noised by a constant factor z: the cross-entropy of a merged model with z folded in', async () => {
    const linear = 'blocks.2.mlp.fc2';
    const c = 0.7;
    using model = await adaptedModel();
    const base = (await loadTensors(fixture(`${name}.base.safetensors`))).tensors;
    using merged = await model.merged();
    const mergedState = merged.stateDict();
    const losses: Record<string, number> = {};
    for (const noiseOn of ['adapter', 'h'] as const) {
      const trainer = new Trainer(model, { optimizer: { lr: 0 }, pace: { sigma: fx.sigma, lambda: 0, noiseOn } });
      const z = 1 + trainer.sigmaPerLinear()[linear] * c;
      // ε = 0 everywhere (z = 1) but on the chosen linear, where ε = c for every row and channel.
      const noise = Object.fromEntries(
        Object.entries(referenceNoise()).map(([key, t]) => [
          key,
          tensor(new Float32Array(t.size).fill(key === linear ? c : 0), t.shape),
        ]),
      );
      const step = await trainer.trainStep(io.input, io.target, { noise });
      losses[noiseOn] = step.clsLoss;

      // The same forward without noise: PACE scales Δh (W₀ + z·ΔW, b₀ + z·Δb), PACE_h scales h (z·W, z·b).
      const folded: Record<string, Tensor> = { ...mergedState };
      for (const part of ['weight', 'bias']) {
        const key = `${linear}.${part}`;
        const whole = mergedState[key].toFloat64Array();
        const frozen = base[key].toFloat64Array();
        const values = whole.map((w, i) => (noiseOn === 'h' ? z * w : frozen[i] + z * (w - frozen[i])));
        folded[key] = tensor(Float32Array.from(values), mergedState[key].shape);
      }
      const file = path.join(temp.dir, `folded-${noiseOn}.safetensors`);
      await saveTensors(file, folded);
      using plain = await createModel(fixtureSpec(name), { pretrained: file });
      using logits = await plain.forward(io.input);
      expect(relative(step.clsLoss, crossEntropy(logits, io.target))).toBeLessThan(1e-5);
    }
    expect(Math.abs(losses.h - losses.adapter)).toBeGreaterThan(1e-3);
    disposeTensors(base);
  });
});

/** Trainable parameters plus `scale`·g/‖g‖ (‖·‖ over all of them), as an adapters file for loadAdapters. */
async function movedAdapters(model: Model, gradients: Record<string, Tensor>, scale: number): Promise<string> {
  const current = path.join(temp.dir, `current-${Math.random()}.safetensors`);
  await model.saveAdapters(current);
  const { tensors, metadata } = await loadTensors(current);
  let squares = 0;
  for (const g of Object.values(gradients)) for (const v of g.toFloat64Array()) squares += v * v;
  const norm = Math.sqrt(squares);
  const moved: Record<string, Tensor> = {};
  for (const [key, value] of Object.entries(tensors)) {
    const g = gradients[key].toFloat64Array();
    moved[key] = tensor(
      Float32Array.from(value.toFloat64Array(), (v, i) => v + (scale * g[i]) / norm),
      value.shape,
    );
  }
  const file = path.join(temp.dir, `moved-${Math.random()}.safetensors`);
  await saveTensors(file, moved, { metadata: metadata ?? undefined });
  return file;
}

describe('SAM, GP and FPA + GP: the update direction from a second gradient at θ + r·g/‖g‖', () => {
  const cases = [
    { method: 'SAM (ρ 0.05)', variant: 'pace', optimizer: { samRho: 0.05 }, radius: 0.05, alpha: 1 },
    {
      method: 'GP (γ 0.1, r 0.05)',
      variant: 'pace',
      optimizer: { gradientPenalty: 0.1, gradientPenaltyRadius: 0.05 },
      radius: 0.05,
      alpha: 2,
    },
    {
      method: 'FPA + GP',
      variant: 'fpa',
      optimizer: { gradientPenalty: 0.025, gradientPenaltyRadius: 0.05 },
      radius: 0.05,
      alpha: 0.5,
    },
  ] as const;

  test.each(cases)('$method: (1 − α)·g(θ) + α·g(θ + r·g/‖g‖), parameters restored', async (c) => {
    const pace = { sigma: fx.sigma, lambda: fx.lambda, variant: c.variant };
    // FPA forwards one noisy copy: the reference's first.
    const noise =
      c.variant === 'fpa'
        ? Object.fromEntries(Object.entries(referenceNoise()).map(([key, t]) => [key, stack([copyOf(t, 0, 2)], t, 2)]))
        : referenceNoise();
    // By hand: g at θ, then g at the moved parameters, same noise.
    using first = await adaptedModel();
    await new Trainer(first, { optimizer: { lr: 0 }, pace }).trainStep(io.input, io.target, { noise });
    const g0 = first.gradients();
    using moved = await adaptedModel();
    await moved.loadAdapters(await movedAdapters(first, g0, c.radius));
    await new Trainer(moved, { optimizer: { lr: 0 }, pace }).trainStep(io.input, io.target, { noise });
    const g1 = moved.gradients();
    // The two gradients differ enough that any other mixture (or g(θ) alone) would fail the check below.
    expect(maxRelativeDifference(g1, g0)).toBeGreaterThan(1e-2);
    const expected: Record<string, Tensor> = {};
    for (const [key, value] of Object.entries(g1)) {
      const a = g0[key].toFloat64Array();
      expected[key] = tensor(
        Float32Array.from(value.toFloat64Array(), (v, i) => (1 - c.alpha) * a[i] + c.alpha * v),
        value.shape,
      );
    }

    using model = await adaptedModel();
    const before = model.stateDict();
    const beforeValues = Object.fromEntries(Object.entries(before).map(([k, v]) => [k, v.toFloat64Array()]));
    const trainer = new Trainer(model, { optimizer: { lr: 0, ...c.optimizer }, pace });
    const step = await trainer.trainStep(io.input, io.target, { noise });
    expect(maxRelativeDifference(model.gradients(), expected)).toBeLessThan(1e-4);
    // The losses reported are the step's own, at θ; the parameters are θ again (lr 0), bit for bit.
    const plain = await new Trainer(await adaptedModel(), { optimizer: { lr: 0 }, pace }).trainStep(
      io.input,
      io.target,
      { noise },
    );
    expect(step.totalLoss).toBe(plain.totalLoss);
    for (const [key, value] of Object.entries(model.stateDict())) {
      expect(value.toFloat64Array()).toEqual(beforeValues[key]);
    }
  });

  test('SAM takes AdamW’s step along its gradient, and reuses the first forward’s drop-path masks', async () => {
    const pace = { sigma: fx.sigma, lambda: fx.lambda };
    const lr = 0.01;
    using model = await adaptedModel();
    const before = Object.fromEntries(Object.entries(model.stateDict()).map(([k, v]) => [k, v.toFloat64Array()]));
    const trainer = new Trainer(model, { optimizer: { lr, weightDecay: 0.1, samRho: 0.05 }, pace });
    await trainer.trainStep(io.input, io.target, { noise: referenceNoise() });
    // AdamW's first step: m̂ = g, v̂ = g², so θ₁ = θ·(1 − lr·wd) − lr·g / (|g| + ε).
    const gradients = model.gradients();
    const after = model.stateDict();
    for (const [key, g] of Object.entries(gradients)) {
      const theta = before[key];
      const expected = g.toFloat64Array().map((v, i) => theta[i] * (1 - lr * 0.1) - (lr * v) / (Math.abs(v) + 1e-8));
      const got = after[key].toFloat64Array();
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - expected[i])).toBeLessThan(1e-6);
    }

    // With drop path on and ρ → 0, SAM's gradient is the plain step's (same seed: same noise and masks) only if
    // its second forward reuses the first's masks; fresh masks would change it at order 1.
    const gradientsOf = async (optimizer: TrainerOptions['optimizer']) => {
      using dropping = await fixtureAdaptedModel(name, { dropPathRate: 0.5 });
      await new Trainer(dropping, { optimizer, pace, seed: 5 }).trainStep(io.input, io.target);
      return dropping.gradients();
    };
    const plainGradients = await gradientsOf({ lr: 0 });
    expect(maxRelativeDifference(await gradientsOf({ lr: 0, samRho: 1e-7 }), plainGradients)).toBeLessThan(1e-3);
    expect(maxRelativeDifference(await gradientsOf({ lr: 0, samRho: 0.5 }), plainGradients)).toBeGreaterThan(1e-3);
  });

  test('a non-finite loss at the moved parameters stops the step on the CPU with θ and AdamW as they were', async () => {
    // Bug: the second pass's loss went unchecked: its NaN gradients were applied, and the next step's error then
    // said "the parameters are as before this step" of parameters that were NaN.
    const pace = { sigma: fx.sigma, lambda: fx.lambda };
    using model = await adaptedModel();
    const before = Object.fromEntries(Object.entries(model.stateDict()).map(([k, v]) => [k, v.toFloat64Array()]));
    const trainer = new Trainer(model, { optimizer: { lr: 0.01, samRho: 1e38 }, pace });
    await expect(trainer.trainStep(io.input, io.target, { noise: referenceNoise() })).rejects.toThrow(
      // the distance moved did it, not the learning rate
      /^the loss became (nan|inf) at the parameters SAM\/GP moved to \(lower optimizer\.samRho or optimizer\.gradientPenaltyRadius, the distance moved\); the parameters are as before this step$/,
    );
    for (const [key, value] of Object.entries(model.stateDict())) {
      expect([key, value.toFloat64Array()]).toEqual([key, before[key]]);
    }
    expect(trainer.iteration).toBe(0); // nor did the optimizer count a step
  });

  test('options are checked', async () => {
    using model = await adaptedModel();
    expect(() => new Trainer(model, { optimizer: { samRho: 0.05, gradientPenalty: 0.1 } })).toThrow(
      'optimizer.samRho and optimizer.gradientPenalty are alternatives',
    );
    expect(
      () => new Trainer(model, { optimizer: { samRho: 0.05 }, pace: { sigma: 1, variant: 'fast', datasetSize: 4 } }),
    ).toThrow(/fast PACE variant's logit history/);
    expect(() => new Trainer(model, { optimizer: { samRho: -1 } })).toThrow(/samRho/);
  });
});
