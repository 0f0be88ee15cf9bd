import path from 'node:path';

import {
  createModel,
  disposeTensors,
  loadTensors,
  tensor,
  Trainer,
  type Model,
  type ModelSpecInput,
  type Tensor,
} from '../lib';
import { makeTempDir } from './support/paths';
import { colourData, tinyVit } from './support/synthetic';

// Several AdamW steps on a tiny model, each parameter after each step against a float64 re-implementation of
// torch.optim.AdamW driven by the gradients the model reports for that step. The settings make every classic
// mistake move the parameters far beyond the tolerance: lr·wd = 5e-3 of each weight per step (a dropped or
// coupled decay), betas and eps away from the defaults (ignored options), several steps (wrong β₁/β₂ or a
// missing bias correction only show from step 2 on, or as a 3× step at step 1).

const temp = makeTempDir('adamw');
afterAll(() => temp.cleanup());

const STEPS = 4;
const batch = 8;

type Arrays = Record<string, Float64Array>;

async function trainableValues(model: Model, tag: string): Promise<Arrays> {
  const file = path.join(temp.dir, `${tag}-${Math.random()}.safetensors`);
  await model.saveAdapters(file);
  const { tensors } = await loadTensors(file);
  const values: Arrays = {};
  for (const [name, t] of Object.entries(tensors)) values[name] = t.toFloat64Array();
  disposeTensors(tensors);
  return values;
}

function gradientValues(model: Model): Arrays {
  const gradients = model.gradients();
  const values: Arrays = {};
  for (const [name, t] of Object.entries(gradients)) values[name] = t.toFloat64Array();
  disposeTensors(gradients);
  return values;
}

const globalNorm = (arrays: Arrays) => {
  let squares = 0;
  for (const a of Object.values(arrays)) for (const v of a) squares += v * v;
  return Math.sqrt(squares);
};

interface AdamWOptions {
  lr: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
}

/**
 * torch.optim.AdamW (amsgrad off), float64: p ← p·(1 − lr·wd); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
 * p ← p − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + eps). Also returns, per element, a bound on the float32
 * round-off of the update: the same update with every term of m taken with its absolute value.
 */
class ReferenceAdamW {
  readonly m: Arrays = {};
  readonly v: Arrays = {};
  readonly mAbs: Arrays = {};
  step = 0;
  /** `decayOf` gives a parameter's weight decay where it is not `options.weightDecay` (a group without decay). */
  constructor(
    readonly options: AdamWOptions,
    readonly decayOf: (name: string) => number = () => options.weightDecay,
  ) {}

  update(params: Arrays, grads: Arrays): { next: Arrays; scale: Arrays } {
    const { lr, betas, eps } = this.options;
    const [beta1, beta2] = betas;
    this.step++;
    const bias1 = 1 - beta1 ** this.step;
    const bias2 = 1 - beta2 ** this.step;
    const next: Arrays = {};
    const scale: Arrays = {};
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      expect([name, g?.length]).toEqual([name, p.length]);
      this.m[name] ??= new Float64Array(p.length);
      this.v[name] ??= new Float64Array(p.length);
      this.mAbs[name] ??= new Float64Array(p.length);
      const [m, v, mAbs] = [this.m[name], this.v[name], this.mAbs[name]];
      const weightDecay = this.decayOf(name);
      next[name] = new Float64Array(p.length);
      scale[name] = new Float64Array(p.length);
      for (let i = 0; i < p.length; i++) {
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        mAbs[i] = beta1 * mAbs[i] + (1 - beta1) * Math.abs(g[i]);
        const denom = Math.sqrt(v[i]) / Math.sqrt(bias2) + eps;
        next[name][i] = p[i] * (1 - lr * weightDecay) - ((lr / bias1) * m[i]) / denom;
        scale[name][i] = ((lr / bias1) * mAbs[i]) / denom;
      }
    }
    return { next, scale };
  }
}

/**
 * The worst element's error in units of its allowance. libtorch computes in float32: the decayed parameter
 * and the result each round once, half an ulp each, and an ulp of |p| is at most 2^-23·|p|, so rounding alone
 * stays below 2^-23·|p| (measured: up to 0.47 of the allowance here, which is that). m, v, √v and the quotient
 * carry a few float32 roundings relative to the update's scale (1e-6 allowed, about 16 ulps). The gradients
 * are the very ones the step used, so no gradient near eps can amplify a difference between two of them.
 */
function worstError(ours: Arrays, reference: { next: Arrays; scale: Arrays }, previous: Arrays): [string, number] {
  let worst: [string, number] = ['', 0];
  for (const [name, expected] of Object.entries(reference.next)) {
    const got = ours[name];
    for (let i = 0; i < expected.length; i++) {
      const allowed =
        2 * 2 ** -23 * Math.max(Math.abs(previous[name][i]), Math.abs(expected[i])) +
        1e-6 * reference.scale[name][i] +
        1e-30;
      const ratio = Math.abs(got[i] - expected[i]) / allowed;
      if (ratio > worst[1]) worst = [name, ratio];
    }
  }
  return worst;
}

async function tinyModel(): Promise<Model> {
  const model = await createModel(tinyVit, { seed: 5 });
  model.addAdapters({ rank: 2 });
  return model;
}

function batches(): { images: Tensor; targets: Tensor }[] {
  return Array.from({ length: STEPS }, (_, s) => {
    const { images, labels } = colourData(batch, 100 + s);
    return { images: tensor(images, [batch, 3, 16, 16]), targets: tensor(labels) };
  });
}

describe('AdamW over several steps against a float64 torch.optim.AdamW', () => {
  const data = batches();
  afterAll(() => data.forEach(({ images, targets }) => [images, targets].forEach((t) => t.dispose())));

  test.each([
    ['torch defaults for betas and eps', { lr: 1e-2, weightDecay: 0.5, betas: [0.9, 0.999], eps: 1e-8 }],
    ['other betas and eps (are they passed on?)', { lr: 3e-3, weightDecay: 0.8, betas: [0.7, 0.95], eps: 1e-6 }],
  ] as [string, AdamWOptions][])(
    '%s: decoupled decay, bias-corrected moments, every parameter after every step',
    async (_, options) => {
      using model = await tinyModel();
      const trainer = new Trainer(model, { optimizer: options });
      const reference = new ReferenceAdamW(options);
      let params = await trainableValues(model, 'start');
      expect(Object.keys(params).sort()).toEqual([...model.trainableParameters()].sort());
      let moved = 0;
      for (let s = 0; s < STEPS; s++) {
        await trainer.trainStep(data[s].images, data[s].targets);
        // trainStep zeroes the gradients, runs backward and steps: what gradients() holds is what the step used.
        const grads = gradientValues(model);
        const expected = reference.update(params, grads);
        const ours = await trainableValues(model, `step${s}`);
        const [name, ratio] = worstError(ours, expected, params);
        expect([s, name, ratio < 1]).toEqual([s, name, true]);
        for (const [key, p] of Object.entries(params)) {
          for (let i = 0; i < p.length; i++) moved = Math.max(moved, Math.abs(ours[key][i] - p[i]));
        }
        params = ours;
      }
      expect(moved).toBeGreaterThan(options.lr / 2);
    },
  );

  test('clipGradNorm scales all gradients together to the global L2 norm, as clip_grad_norm_, over several steps', async () => {
    // The gradients before clipping come from a twin that holds the same parameters and steps with lr 0.
    using model = await tinyModel();
    using twin = await tinyModel();
    const options: AdamWOptions = { lr: 1e-2, weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-8 };
    const probe = new Trainer(twin, { optimizer: { lr: 0, weightDecay: 0 } });
    const rawGradients = async (s: number, values: Arrays): Promise<Arrays> => {
      const file = path.join(temp.dir, `twin-${Math.random()}.safetensors`);
      await model.saveAdapters(file);
      await twin.loadAdapters(file);
      const loaded = await trainableValues(twin, 'twin');
      for (const [name, p] of Object.entries(values)) expect([name, loaded[name]]).toEqual([name, p]);
      await probe.trainStep(data[s].images, data[s].targets);
      return gradientValues(twin);
    };
    let params = await trainableValues(model, 'clip-start');
    const maxNorm = 0.3 * globalNorm(await rawGradients(0, params));
    const trainer = new Trainer(model, { optimizer: { ...options, clipGradNorm: maxNorm } });
    const reference = new ReferenceAdamW(options);
    let clipped = 0;
    for (let s = 0; s < STEPS; s++) {
      const raw = await rawGradients(s, params);
      await trainer.trainStep(data[s].images, data[s].targets);
      const grads = gradientValues(model);
      const norm = globalNorm(raw);
      const scale = Math.min(1, maxNorm / (norm + 1e-6));
      if (scale < 1) clipped++;
      // One float32 scale times each float32 gradient: a few ulps of each element.
      let worst = 0;
      for (const [name, g] of Object.entries(raw)) {
        for (let i = 0; i < g.length; i++) {
          const diff = Math.abs(grads[name][i] - g[i] * scale);
          worst = Math.max(worst, diff / (Math.abs(g[i] * scale) * 2e-6 + 1e-30));
        }
      }
      expect([s, worst < 1]).toEqual([s, true]);
      expect(Math.abs(globalNorm(grads) - Math.min(norm, maxNorm)) / maxNorm).toBeLessThan(1e-5);
      const expected = reference.update(params, grads);
      const ours = await trainableValues(model, `clip-step${s}`);
      const [name, ratio] = worstError(ours, expected, params);
      expect([s, name, ratio < 1]).toEqual([s, name, true]);
      params = ours;
    }
    expect(clipped).toBeGreaterThanOrEqual(3);
  });
});

describe("full fine-tuning decays as timm's create_optimizer_v2 does", () => {
  // Bug: type 'full' decayed every parameter; timm spares biases, 1-D parameters (norms) and what the model's
  // no_weight_decay() names, and a timm user's full fine-tuning baseline does so.
  const tinySwin = {
    family: 'swin',
    imgSize: 16,
    patchSize: 2,
    windowSize: 4,
    embedDim: 8,
    depths: [1, 1],
    numHeads: [1, 2],
    numClasses: 4,
  } satisfies ModelSpecInput;
  const data = batches();
  afterAll(() => data.forEach(({ images, targets }) => [images, targets].forEach((t) => t.dispose())));

  test.each([
    ['ViT: pos_embed and cls_token', tinyVit, ['pos_embed', 'cls_token']],
    ['Swin: the relative position bias tables', tinySwin, ['relative_position_bias_table']],
  ] as [string, ModelSpecInput, string[]][])(
    '%s spared, with biases and norms; every other parameter decayed',
    async (_, spec, named) => {
      using model = await createModel(spec, { seed: 5 });
      model.addAdapters({ type: 'full' });
      const options: AdamWOptions = { lr: 1e-2, weightDecay: 0.5, betas: [0.9, 0.999], eps: 1e-8 };
      const trainer = new Trainer(model, { optimizer: options });
      const dims = new Map(model.parameters().map((p) => [p.name, p.shape.length]));
      const spared = (name: string) =>
        dims.get(name)! <= 1 || name.endsWith('.bias') || named.some((part) => name.includes(part));
      const exempt = [...dims.keys()].filter(
        (name) => dims.get(name)! > 1 && named.some((part) => name.includes(part)),
      );
      expect(exempt.length).toBeGreaterThanOrEqual(named.length);
      expect([...dims.keys()].filter((name) => !spared(name)).length).toBeGreaterThan(4);
      const reference = new ReferenceAdamW(options, (name) => (spared(name) ? 0 : options.weightDecay));
      let params = await trainableValues(model, 'full-start');
      expect(Object.keys(params).sort()).toEqual([...dims.keys()].sort());
      for (let s = 0; s < 2; s++) {
        await trainer.trainStep(data[s].images, data[s].targets);
        const expected = reference.update(params, gradientValues(model));
        const ours = await trainableValues(model, `full-step${s}`);
        const [name, ratio] = worstError(ours, expected, params);
        expect([s, name, ratio < 1]).toEqual([s, name, true]);
        params = ours;
      }
    },
  );
});
