// PACE options the README documents that test/pace.test.ts exercises only loosely: the `fast` variant with noise
// on, the additive-noise ablation, and stochastic depth's per-block rates. The expected values come from float64
// recomputations in this file (from features, head weights and noise draws the API exposes), closed forms, and
// timm's rule dpr = linspace(0, rate, depth).
import path from 'node:path';

import {
  createModel,
  disposeTensors,
  loadTensors,
  saveTensors,
  tensor,
  Trainer,
  type Model,
  type ModelSpecInput,
  type Tensor,
  type TensorRecord,
} from '../lib';
import { cpuBf16Refused, cpuBf16Runs } from './support/cpu-bf16';
import { fixture, fixtureAdaptedModel, fixtureIndex, fixtureNoise, fixtureSpec } from './support/fixtures';
import { relativeError } from './support/compare';
import { makeTempDir } from './support/paths';
import { describeIf } from './support/test-if';

const temp = makeTempDir('pace-options');
afterAll(() => temp.cleanup());

const name = 'pace_vit_loramul_vptadd';
const fx = fixtureIndex[name];
const depth: number = fx.config.depth;
const classes: number = fx.config.num_classes;

let io: TensorRecord;
beforeAll(async () => {
  io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
});
afterAll(() => disposeTensors(io));

const adaptedModel = (): Promise<Model> => fixtureAdaptedModel(name);

const relative = (ours: number, ref: number) => Math.abs(ours - ref) / Math.abs(ref);

/** Rows of a 2-D tensor as float64 arrays. */
function rows(t: Tensor): Float64Array[] {
  const [n, m] = t.shape;
  const flat = t.toFloat64Array();
  return Array.from({ length: n }, (_, i) => flat.slice(i * m, (i + 1) * m));
}

/** The clean logits W·f + b of each sample in float64: f is the class token of the final norm (ViT pools it). */
async function cleanLogits(model: Model, images: Tensor): Promise<Float64Array[]> {
  const file = path.join(temp.dir, `trainable-${Math.random()}.safetensors`);
  await model.saveAdapters(file);
  const { tensors } = await loadTensors(file);
  const weight = rows(tensors['head.weight']);
  const bias = tensors['head.bias'].toFloat64Array();
  disposeTensors(tensors);
  using features = await model.forwardFeatures(images);
  const [batch, tokens, dim] = features.shape;
  const flat = features.toFloat64Array();
  return Array.from({ length: batch }, (_, b) => {
    const f = flat.subarray(b * tokens * dim, b * tokens * dim + dim);
    return Float64Array.from(weight, (w, c) => w.reduce((sum, wi, i) => sum + wi * f[i], bias[c]));
  });
}

function crossEntropy(logits: Float64Array[], targets: BigInt64Array): number {
  let total = 0;
  logits.forEach((row, b) => {
    const max = Math.max(...row);
    const logSumExp = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    total += logSumExp - row[Number(targets[b])];
  });
  return total / logits.length;
}

/** mean over samples of Σ_classes (a − b)²; b absent means zeros. */
function consistency(a: Float64Array[], b?: Float64Array[]): number {
  let total = 0;
  a.forEach((row, i) => row.forEach((v, c) => (total += (v - (b ? b[i][c] : 0)) ** 2)));
  return total / a.length;
}

function selectRows(images: Tensor, order: number[]): Tensor {
  const per = images.size / images.shape[0];
  const flat = images.toFloat32Array();
  const out = new Float32Array(order.length * per);
  order.forEach((r, i) => out.set(flat.subarray(r * per, (r + 1) * per), i * per));
  return tensor(out, [order.length, ...images.shape.slice(1)]);
}

describe("fast: consistency with each sample's logits from its previous visit, noise on", () => {
  // Bug caught: the stored logits are the clean ones (or of the other noise draw), looked up by position in the
  // batch rather than by sample index, or a first visit compared with anything but zeros. Noise is on the head
  // only (blockStart = depth), so the noisy logits z ⊙ (W·f + b) are recomputable here from the features, the
  // head and the draws.
  test('both steps match a float64 recomputation from the features, the head and the draws', async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model, {
      optimizer: { lr: fx.adamw.lr, weightDecay: fx.adamw.weight_decay },
      pace: { sigma: 1.2, lambda: 1, variant: 'fast', datasetSize: 10, blockStart: depth },
      seed: 3,
    });
    const sigma = trainer.sigmaPerLinear();
    const sigmaHead = sigma.head;
    expect(sigmaHead).toBeGreaterThan(0);
    expect(Object.entries(sigma).filter(([linear, s]) => linear !== 'head' && s !== 0)).toEqual([]);
    const noisy = (clean: Float64Array[], draws: Tensor) =>
      rows(draws).map((eps, b) => clean[b].map((v, c) => v * (1 + sigmaHead * eps[c])));

    const targets = io.target.toBigInt64Array();
    const indices = [7, 2, 9, 0];
    const clean1 = await cleanLogits(model, io.input);
    using firstIndices = tensor(BigInt64Array.from(indices.map(BigInt)));
    const first = await trainer.trainStep(io.input, io.target, { indices: firstIndices });
    const draws1 = trainer.lastNoise();
    expect(Object.keys(draws1)).toEqual(['head']);
    expect(draws1.head.shape).toEqual([4, classes]); // one noisy forward: no second copy
    const logits1 = noisy(clean1, draws1.head);
    expect(relative(first.clsLoss, crossEntropy(logits1, targets))).toBeLessThan(1e-4);
    expect(relative(first.paceLoss, consistency(logits1))).toBeLessThan(1e-4);
    expect(relative(first.totalLoss, first.clsLoss + first.paceLoss)).toBeLessThan(1e-6);

    // Second step: the samples in reverse order, and sample 0 under an index not seen yet (5 instead of 7).
    const order = [3, 2, 1, 0];
    const indices2 = [0, 9, 2, 5];
    using images2 = selectRows(io.input, order);
    using targets2 = tensor(BigInt64Array.from(order.map((r) => targets[r])));
    using secondIndices = tensor(BigInt64Array.from(indices2.map(BigInt)));
    const clean2 = await cleanLogits(model, images2);
    const second = await trainer.trainStep(images2, targets2, { indices: secondIndices });
    const draws2 = trainer.lastNoise();
    const logits2 = noisy(clean2, draws2.head);
    const previous = indices2.map((index) => {
      const visit = indices.indexOf(index);
      return visit < 0 ? new Float64Array(classes) : logits1[visit];
    });
    expect(relative(second.clsLoss, crossEntropy(logits2, targets2.toBigInt64Array()))).toBeLessThan(1e-4);
    expect(relative(second.paceLoss, consistency(logits2, previous))).toBeLessThan(1e-4);
    disposeTensors(draws1);
    disposeTensors(draws2);
  });
});

describe("additive noise: σ·ε added to each adapter's output (and the head's), not z = 1 + σ·ε multiplied", () => {
  // Bug caught: the `noise` option ignored (multiplicative noise used), or ε scaled wrongly.
  test('with noise on the head only, the losses equal their closed forms in the draws', async () => {
    using model = await adaptedModel();
    const lambda = 0.5;
    const trainer = new Trainer(model, {
      pace: { sigma: 1.2, lambda, noise: 'additive', blockStart: depth },
      seed: 4,
    });
    const sigmaHead = trainer.sigmaPerLinear().head;
    const clean = await cleanLogits(model, io.input);
    const step = await trainer.trainStep(io.input, io.target);
    const draws = trainer.lastNoise();
    expect(Object.keys(draws)).toEqual(['head']);
    const eps = rows(draws.head); // [2B, classes]: rows 0..B-1 the first copy
    const batch = clean.length;
    const first = clean.map((row, b) => row.map((v, c) => v + sigmaHead * eps[b][c]));
    const second = clean.map((row, b) => row.map((v, c) => v + sigmaHead * eps[batch + b][c]));
    expect(relative(step.clsLoss, crossEntropy(first, io.target.toBigInt64Array()))).toBeLessThan(1e-4);
    // Additive noise cancels the logits themselves: the consistency term is σ²·mean Σ (ε₁ − ε₂)².
    const closedForm = sigmaHead ** 2 * consistency(eps.slice(0, batch), eps.slice(batch));
    expect(relative(step.paceLoss, closedForm)).toBeLessThan(1e-4);
    expect(relative(step.paceLoss, consistency(first, second))).toBeLessThan(1e-4);
    expect(relative(step.totalLoss, step.clsLoss + lambda * step.paceLoss)).toBeLessThan(1e-6);
    disposeTensors(draws);
  });

  test('adapters that output zero are still noised (multiplied noise leaves them zero); draws are N(0, 1) per sample and channel', async () => {
    const run = async (noise: 'additive' | 'multiplicative') => {
      using model = await createModel(fixtureSpec(name), { pretrained: fixture(`${name}.base.safetensors`) });
      model.addAdapters({ type: 'loramul_vptadd', rank: 4 }); // fresh: every adapter's output is zero
      const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1, noise }, seed: 9 });
      using quietHead = tensor(new Float32Array(2 * 4 * classes), [8, classes]); // the head's ε replayed as 0
      const step = await trainer.trainStep(io.input, io.target, { noise: { head: quietHead } });
      return { step, draws: trainer.lastNoise() };
    };
    const multiplied = await run('multiplicative');
    expect(multiplied.step.paceLoss).toBeLessThan(1e-10);
    disposeTensors(multiplied.draws);
    const added = await run('additive');
    expect(added.step.paceLoss).toBeGreaterThan(1e-3);
    const values: number[] = [];
    for (const [linear, draw] of Object.entries(added.draws)) {
      if (linear === 'head') continue;
      expect([linear, draw.shape.length, draw.shape[0], draw.shape[1]]).toEqual([linear, 3, 8, 1]);
      values.push(...draw.toFloat64Array());
    }
    disposeTensors(added.draws);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length);
    // Five standard errors: 1/√n for the mean, about 1/√(2n) for the standard deviation of normal draws.
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(values.length));
    expect(Math.abs(std - 1)).toBeLessThan(5 / Math.sqrt(2 * values.length));
  });
});

describe('stochastic depth: block i drops its branches with timm’s dpr[i] = linspace(0, rate, blocks)[i]', () => {
  // Bug caught: one rate for every block, rates over the wrong count (depth ± 1, per Swin stage), branches not
  // scaled by 1/keep, or one mask shared by a block's two branches.
  //
  // Every weight is zero but the final norm's scale and the two branch biases of each block, which put 1 on a
  // channel of their own: the residual stream is then m/keep on that channel (m the sample's keep mask), so
  // which branches a sample kept reads off the final norm's output, and the norm's output is recomputable in
  // float64 from those masks and the expected rates. An always-zero channel is the baseline.
  const expectedRates = (rate: number, blocks: number) =>
    Array.from({ length: blocks }, (_, i) => Math.fround((rate * i) / (blocks - 1)));

  const layerNorm = (x: number[], eps: number) => {
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length;
    return x.map((v) => (v - mean) / Math.sqrt(variance + eps));
  };

  /** A checkpoint of zeros but LayerNorm scales (1) and the given biases (1 on one channel each). */
  async function probeWeights(model: Model, channelOf: Record<string, number>, extra: Record<string, number[]>) {
    const record: Record<string, Tensor> = {};
    for (const p of model.parameters()) {
      const size = p.shape.reduce((n, d) => n * d, 1);
      const values = new Float32Array(size);
      if (/(^|\.)norm\d?\.weight$/.test(p.name) || p.name === 'norm.weight') values.fill(1);
      if (p.name in channelOf) values[channelOf[p.name]] = 1;
      if (p.name in extra) values.set(extra[p.name]);
      record[p.name] = tensor(values, p.shape);
    }
    const file = path.join(temp.dir, `probe-${Math.random()}.safetensors`);
    await saveTensors(file, record);
    disposeTensors(record);
    return file;
  }

  /**
   * Reads each sample's masks from the features and checks the features against the float64 recomputation,
   * then that each block's branches dropped as often as dpr says (five standard errors).
   */
  function checkDrops(masks: number[][], rates: number[], branchBlock: number[]) {
    const drops = new Array(rates.length).fill(0);
    const both = new Array(rates.length).fill(0);
    for (const m of masks) {
      branchBlock.forEach((block, k) => (drops[block] += 1 - m[k]));
      for (let block = 0; block < rates.length; block++) {
        const [a, b] = branchBlock.flatMap((owner, k) => (owner === block ? [m[k]] : []));
        both[block] += a === 0 && b === 0 ? 1 : 0;
      }
    }
    rates.forEach((p, block) => {
      const draws = 2 * masks.length;
      const bound = 5 * Math.sqrt(Math.max(p * (1 - p), 1e-12) / draws) + 1e-12;
      expect([block, Math.abs(drops[block] / draws - p) <= bound]).toEqual([block, true]);
      const n = masks.length;
      const bothBound = 5 * Math.sqrt(Math.max(p * p * (1 - p * p), 1e-12) / n) + 1e-12;
      expect([block, Math.abs(both[block] / n - p * p) <= bothBound]).toEqual([block, true]);
    });
  }

  test('ViT: rates 0, 0.1, …, 0.5 over 6 blocks, read back from each sample’s branch scales and counted', async () => {
    const blocks = 6;
    const rate = 0.5;
    const spec: ModelSpecInput = {
      family: 'vit',
      imgSize: 8,
      patchSize: 8,
      embedDim: 16,
      depth: blocks,
      numHeads: 1,
      numClasses: 2,
      dropPathRate: rate,
    };
    using shape = await createModel(spec);
    const channelOf: Record<string, number> = {};
    const branchBlock: number[] = [];
    for (let i = 0; i < blocks; i++) {
      channelOf[`blocks.${i}.attn.proj.bias`] = 2 * i;
      channelOf[`blocks.${i}.mlp.fc2.bias`] = 2 * i + 1;
      branchBlock.push(i, i);
    }
    using model = await createModel(spec, { pretrained: await probeWeights(shape, channelOf, {}) });
    model.train();
    const rates = expectedRates(rate, blocks);
    const keep = branchBlock.map((block) => 1 - rates[block]);
    const batch = 20000;
    using images = tensor(new Float32Array(batch * 3 * 8 * 8), [batch, 3, 8, 8]);
    const masks: number[][] = [];
    let worst = 0;
    for (let pass = 0; pass < 3; pass++) {
      using features = await model.forwardFeatures(images); // [batch, 2 tokens, 16]
      const flat = features.toFloat64Array();
      for (let b = 0; b < batch; b++) {
        const y = flat.subarray(b * 32, b * 32 + 16); // the class token
        const m = branchBlock.map((_, k) => (y[k] - y[15] > 0.1 ? 1 : 0));
        const expected = layerNorm(
          Array.from({ length: 16 }, (_, k) => (k < m.length ? m[k] / keep[k] : 0)),
          1e-6,
        );
        expected.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - y[k]))));
        masks.push(m);
      }
    }
    expect(worst).toBeLessThan(1e-4);
    checkDrops(masks, rates, branchBlock);
  });

  test('Swin: the rate rises over all blocks across stages (0, 0.2 | 0.4, 0.6 for depths [2, 2])', async () => {
    const rate = 0.6;
    const spec: ModelSpecInput = {
      family: 'swin',
      imgSize: 16,
      patchSize: 4,
      windowSize: 2,
      embedDim: 16,
      depths: [2, 2],
      numHeads: [1, 2],
      numClasses: 2,
      dropPathRate: rate,
    };
    using shape = await createModel(spec);
    // Stage 0 writes channels 0-3 (15 stays 0); the merging's norm gives each of the four copies LN(x), and the
    // reduction passes the first copy on as stage 1's channels 0-15. Stage 1 writes channels 16-19 (31 stays 0).
    const channelOf: Record<string, number> = {};
    const branchBlock: number[] = [];
    [
      [0, 0, 0],
      [0, 1, 1],
      [1, 0, 2],
      [1, 1, 3],
    ].forEach(([stage, j, block]) => {
      const base = stage === 0 ? 2 * block : 16 + 2 * (block - 2);
      channelOf[`layers.${stage}.blocks.${j}.attn.proj.bias`] = base;
      channelOf[`layers.${stage}.blocks.${j}.mlp.fc2.bias`] = base + 1;
      branchBlock.push(block, block);
    });
    const reduction = new Array(32 * 64).fill(0);
    for (let c = 0; c < 16; c++) reduction[c * 64 + c] = 1;
    const file = await probeWeights(shape, channelOf, { 'layers.1.downsample.reduction.weight': reduction });
    using model = await createModel(spec, { pretrained: file });
    model.train();
    const rates = expectedRates(rate, 4);
    const keep = branchBlock.map((block) => 1 - rates[block]);
    const batch = 4000;
    using images = tensor(new Float32Array(batch * 3 * 16 * 16), [batch, 3, 16, 16]);
    const masks: number[][] = [];
    let worst = 0;
    for (let pass = 0; pass < 8; pass++) {
      using features = await model.forwardFeatures(images); // [batch, 2, 2, 32]
      const flat = features.toFloat64Array();
      for (let b = 0; b < batch; b++) {
        const y = flat.subarray(b * 128, b * 128 + 32); // one position: all four are equal
        const m = branchBlock.map((_, k) => {
          const [channel, baseline] = k < 4 ? [k, 15] : [16 + k - 4, 31];
          return y[channel] - y[baseline] > 0.1 ? 1 : 0;
        });
        const stage0 = layerNorm(
          Array.from({ length: 16 }, (_, c) => (c < 4 ? m[c] / keep[c] : 0)),
          1e-5,
        );
        const stage1 = Array.from({ length: 16 }, (_, c) => (c < 4 ? m[4 + c] / keep[4 + c] : 0));
        const expected = layerNorm([...stage0, ...stage1], 1e-5);
        expected.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - y[k]))));
        masks.push(m);
      }
    }
    expect(worst).toBeLessThan(1e-4);
    checkDrops(masks, rates, branchBlock);
  });
});

describeIf(cpuBf16Runs, cpuBf16Refused)(
  'precision does not change the noise: one seed draws the same ε under fp32 and bf16',
  () => {
    // Under bf16 autocast the attention's and GELU's outputs (the inputs of proj and fc2), Swin's windows and the
    // head's logits are bf16; ε is drawn in float32 all the same, so a run's noise does not depend on its precision.
    test.each(['pace_vit_loramul_vptadd', 'pace_swin_loramul_vptadd'])(
      "%s: every linear's draws, bit for bit",
      async (fixtureName) => {
        const { tensors: fixtureIo } = await loadTensors(fixture(`${fixtureName}.io.safetensors`));
        const drawsUnder = async (precision: 'fp32' | 'bf16') => {
          using model = await fixtureAdaptedModel(fixtureName);
          const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, precision, seed: 11 });
          await trainer.trainStep(fixtureIo.input, fixtureIo.target);
          return trainer.lastNoise();
        };
        const fp32 = await drawsUnder('fp32');
        const bf16 = await drawsUnder('bf16');
        expect(Object.keys(bf16).sort()).toEqual(Object.keys(fp32).sort());
        expect(Object.keys(fp32).some((linear) => linear.startsWith('head'))).toBe(true);
        expect(Object.keys(fp32).length).toBeGreaterThan(4);
        for (const [linear, draw] of Object.entries(fp32)) {
          const same = Buffer.from(bf16[linear].toFloat32Array().buffer).equals(
            Buffer.from(draw.toFloat32Array().buffer),
          );
          expect([linear, bf16[linear].dtype, same]).toEqual([linear, 'float32', true]);
        }
        disposeTensors(fp32);
        disposeTensors(bf16);
        disposeTensors(fixtureIo);
      },
    );
  },
);

describe("Trainer.options: the core's defaults, filled in where the user said nothing", () => {
  test('a ViT trainer without options runs with the reference settings, noise from block 1', async () => {
    using model = await adaptedModel();
    expect(new Trainer(model).options).toEqual({
      optimizer: {
        lr: 1e-3,
        weightDecay: 1e-4,
        betas: [0.9, 0.999],
        eps: 1e-8,
        clipGradNorm: 0,
        samRho: 0,
        gradientPenalty: 0,
        gradientPenaltyRadius: 0.01,
      },
      pace: {
        sigma: 0,
        lambda: 0,
        blockStart: 1,
        noise: 'multiplicative',
        noiseShape: 'BC',
        sigmaSchedule: 'decreasing',
        variant: 'pace',
        lazyInterval: 1,
        adapterL1: 0,
        noiseOn: 'adapter',
        copies: 2,
      },
      seed: 0,
      precision: 'fp32',
      rank: 0,
      worldSize: 1,
    });
  });

  test("given values are kept; Swin's noise starts at block 0; the fast variant reports its dataset size", async () => {
    using model = await adaptedModel();
    const options = new Trainer(model, {
      optimizer: { lr: 0.5, betas: [0.8, 0.9] },
      pace: { sigma: 0.7, variant: 'fast', datasetSize: 12, blockStart: 2, noise: 'dropout' },
      seed: 3,
    }).options;
    expect(options.optimizer).toEqual({
      lr: 0.5,
      weightDecay: 1e-4,
      betas: [0.8, 0.9],
      eps: 1e-8,
      clipGradNorm: 0,
      samRho: 0,
      gradientPenalty: 0,
      gradientPenaltyRadius: 0.01,
    });
    expect(options.pace).toMatchObject({ sigma: 0.7, lambda: 0, blockStart: 2, noise: 'dropout', variant: 'fast' });
    expect(options.pace.datasetSize).toBe(12);
    expect(options.seed).toBe(3);

    using swin = await createModel(fixtureSpec('swin_tiny_test') as ModelSpecInput);
    swin.addAdapters({ rank: 2 });
    expect(new Trainer(swin, { pace: { sigma: 1 } }).options.pace.blockStart).toBe(0);
  });
});

describe('loraadd_vptadd (LoRA-add with VPT-add; no reference fixture): its terms against a float64 recomputation', () => {
  test('merged weight W0 + down·up and bias b0 + W0·(prompt_down·prompt_up) + delta_b; its PACE gradients', async () => {
    // In block 1: ViT's noise starts there (blockStart 1), so the PACE step below noises this adapter.
    const linear = 'blocks.1.mlp.fc2';
    using model = await createModel(fixtureSpec(name), { pretrained: fixture(`${name}.base.safetensors`), seed: 1 });
    model.addAdapters({ type: 'loraadd_vptadd', rank: 3, targets: [linear] });
    // Every adapter tensor set to seeded non-zero values (the initialisation zeroes the down projections).
    const file = path.join(temp.dir, 'loraadd_vptadd.safetensors');
    await model.saveAdapters(file);
    const saved = await loadTensors(file);
    let state = 7;
    const next = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
    const adapted: TensorRecord = {};
    for (const [key, value] of Object.entries(saved.tensors)) {
      adapted[key] = tensor(
        Float32Array.from(value.toFloat32Array(), () => next()),
        value.shape,
      );
    }
    await saveTensors(file, adapted, { metadata: saved.metadata ?? undefined });
    await model.loadAdapters(file);
    expect(
      Object.keys(saved.tensors)
        .filter((key) => key.startsWith(`${linear}.`))
        .sort(),
    ).toEqual(
      ['delta_W_down', 'delta_W_up', 'delta_b', 'delta_prompt_down', 'delta_prompt_up'].map((p) => `${linear}.${p}`),
    );
    const params = model.stateDict();
    const get = (key: string) => ({ data: params[key].toFloat64Array(), shape: params[key].shape });
    const w0 = get(`${linear}.weight`);
    const b0 = get(`${linear}.bias`);
    const down = get(`${linear}.delta_W_down`);
    const up = get(`${linear}.delta_W_up`);
    const pd = get(`${linear}.delta_prompt_down`);
    const pu = get(`${linear}.delta_prompt_up`);
    const db = get(`${linear}.delta_b`);
    const [out, inp] = w0.shape;
    const rank = up.shape[0];
    const weight = new Float64Array(out * inp);
    const bias = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inp; i++) {
        let product = 0;
        for (let r = 0; r < rank; r++) product += down.data[o * rank + r] * up.data[r * inp + i];
        weight[o * inp + i] = w0.data[o * inp + i] + product;
      }
      let shift = 0;
      for (let i = 0; i < inp; i++) {
        let prompt = 0;
        for (let r = 0; r < rank; r++) prompt += pd.data[i * rank + r] * pu.data[r];
        shift += w0.data[o * inp + i] * prompt;
      }
      bias[o] = b0.data[o] + shift + db.data[o];
    }
    using merged = await model.merged();
    const mergedState = merged.stateDict();
    const maxRelative = (ours: Float64Array, ref: Float64Array) =>
      ours.reduce((worst, v, k) => Math.max(worst, Math.abs(v - ref[k])), 0) /
      ref.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-12);
    expect(maxRelative(mergedState[`${linear}.weight`].toFloat64Array(), weight)).toBeLessThan(1e-6);
    expect(maxRelative(mergedState[`${linear}.bias`].toFloat64Array(), bias)).toBeLessThan(1e-6);
    // The adapter shifts the output: the merged model differs from the plain backbone there.
    expect(maxRelative(bias, b0.data)).toBeGreaterThan(1e-3);

    // Unmerged, the adapter gives the merged model's outputs.
    using unmergedLogits = await model.forward(io.input);
    using mergedLogits = await merged.forward(io.input);
    expect(relativeError(unmergedLogits, mergedLogits)).toBeLessThan(1e-5);

    // Its gradients in a PACE step (σ 1, λ 1; lr 0 so the parameters stay put) against central differences of the
    // loss along a seeded direction, one tensor at a time, with the step's noise replayed for every evaluation.
    const trainer = new Trainer(model, {
      pace: { sigma: 1, lambda: 1 },
      optimizer: { lr: 0, weightDecay: 0 },
      seed: 2,
    });
    expect(trainer.sigmaPerLinear()[linear]).toBeGreaterThan(0);
    const step = await trainer.trainStep(io.input, io.target);
    expect(step.paceLoss).toBeGreaterThan(0);
    const noise = trainer.lastNoise();
    expect(Object.keys(noise)).toContain(linear);
    const gradients = model.gradients();
    const lossAt = async (values: TensorRecord) => {
      await saveTensors(file, values, { metadata: saved.metadata ?? undefined });
      await model.loadAdapters(file);
      return (await trainer.trainStep(io.input, io.target, { noise })).totalLoss;
    };
    expect(await lossAt(adapted)).toBe(step.totalLoss); // the replay is exact
    const h = 1e-2;
    for (const part of ['delta_W_down', 'delta_W_up', 'delta_b', 'delta_prompt_down', 'delta_prompt_up']) {
      const key = `${linear}.${part}`;
      const base = adapted[key].toFloat32Array();
      const direction = Float64Array.from(base, () => next() * 10);
      const analytic = gradients[key].toFloat64Array().reduce((sum, g, k) => sum + g * direction[k], 0);
      const moved = async (by: number) => {
        using shifted = tensor(
          Float32Array.from(base, (v, k) => v + by * direction[k]),
          adapted[key].shape,
        );
        return lossAt({ ...adapted, [key]: shifted });
      };
      const numeric = ((await moved(h)) - (await moved(-h))) / (2 * h);
      // Seen here: within 0.02–0.17 % (float32 losses over a step of 1e-2, and the difference's second-order
      // error); 1 % allowed. A wrong or missing term moves the slope by its whole size.
      expect([key, Math.abs(analytic) > 1e-2]).toEqual([key, true]);
      expect([key, Math.abs(numeric - analytic) / Math.abs(analytic) < 1e-2]).toEqual([key, true]);
    }
    disposeTensors(noise);
    disposeTensors(gradients);
    disposeTensors(saved.tensors);
    disposeTensors(adapted);
    disposeTensors(params);
    disposeTensors(mergedState);
  });
});

describe("the paper's Noise ablation (variant 'noise': one noisy forward, no consistency term)", () => {
  test("replaying the first copy's ε of the PACE reference step gives the reference's cross-entropy", async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model, {
      optimizer: { lr: fx.adamw.lr, weightDecay: fx.adamw.weight_decay },
      pace: { sigma: fx.sigma, variant: 'noise', blockStart: fx.block_start },
    });
    // The reference's ε per linear is [2B, ...]: rows 0..B-1 belong to the first copy, on which the reference
    // computes its cross-entropy. One noisy forward with exactly those draws must reproduce it.
    const batch = io.input.shape[0];
    const firstCopy: TensorRecord = {};
    for (const [key, value] of Object.entries(io)) {
      if (!key.startsWith('noise.')) continue;
      const rows = value.toFloat32Array();
      firstCopy[key.slice('noise.'.length)] = tensor(rows.slice(0, rows.length / 2), [batch, ...value.shape.slice(1)]);
    }
    const step = await trainer.trainStep(io.input, io.target, { noise: firstCopy });
    expect(relative(step.clsLoss, io.cls_loss.toFloat32Array()[0])).toBeLessThan(1e-5);
    expect([step.paceLoss, step.totalLoss]).toEqual([0, step.clsLoss]);
    // A single copy: every draw of the step has the batch's rows, not twice them.
    const draws = trainer.lastNoise();
    expect(Object.keys(draws).sort()).toEqual(Object.keys(firstCopy).sort());
    for (const [linear, draw] of Object.entries(draws)) expect([linear, draw.shape[0]]).toEqual([linear, batch]);
    disposeTensors(draws);
    disposeTensors(firstCopy);
    expect(() => new Trainer(model, { pace: { sigma: 1, lambda: 1, variant: 'noise' } })).toThrow(
      "pace.lambda must be 0 for the noise ablation (variant 'noise' has no consistency term)",
    );
  });
});

describe('the ℓ1-sparsity comparison (pace.adapterL1 = μ): μ·Σ|θ| over the adapters joins the loss', () => {
  test('the loss grows by μ·Σ|θ| and each adapter gradient by μ·sign(θ), the head untouched (same noise)', async () => {
    const mu = 0.01;
    const steps = [];
    for (const adapterL1 of [0, mu]) {
      using model = await adaptedModel();
      const trainer = new Trainer(model, { pace: { sigma: fx.sigma, lambda: fx.lambda, adapterL1 } });
      const noise = fixtureNoise(io);
      const parameters = model.stateDict();
      const step = await trainer.trainStep(io.input, io.target, { noise });
      steps.push({ step, gradients: model.gradients(), parameters });
    }
    const [plain, sparse] = steps;
    // Σ|θ| over the adapter parameters, in float64 from the parameters before the step.
    let absSum = 0;
    for (const [key, value] of Object.entries(plain.parameters)) {
      if (key.includes('.delta_')) for (const v of value.toFloat64Array()) absSum += Math.abs(v);
    }
    expect(absSum).toBeGreaterThan(0);
    expect(relative(sparse.step.totalLoss - plain.step.totalLoss, mu * absSum)).toBeLessThan(1e-4);
    expect([sparse.step.clsLoss, sparse.step.paceLoss]).toEqual([plain.step.clsLoss, plain.step.paceLoss]);
    expect(Object.keys(sparse.gradients).sort()).toEqual(Object.keys(plain.gradients).sort());
    expect(Object.keys(sparse.gradients).length).toBeGreaterThan(0);
    for (const [key, gradient] of Object.entries(sparse.gradients)) {
      const ours = gradient.toFloat64Array();
      const without = plain.gradients[key].toFloat64Array();
      const theta = plain.parameters[key].toFloat64Array();
      // The cross-entropy and consistency gradients are the same computation in both runs (same noise, same
      // parameters); the ℓ1 term's μ·sign(θ) joins their float32 accumulation, which may take the terms in
      // another order: a few ulps of the terms' magnitude (|g| + μ), never more.
      let worst = 0;
      for (let i = 0; i < ours.length; i++) {
        const l1 = key.includes('.delta_') ? mu * Math.sign(theta[i]) : 0;
        const ulps = Math.abs(ours[i] - (without[i] + l1)) / (2 ** -23 * (Math.abs(without[i]) + Math.abs(l1)) + 1e-30);
        worst = Math.max(worst, ulps);
      }
      expect([key, worst <= 4]).toEqual([key, true]);
    }
    for (const { gradients, parameters } of steps) {
      disposeTensors(gradients);
      disposeTensors(parameters);
    }
  });
});
