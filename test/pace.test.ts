import fs from 'node:fs';
import path from 'node:path';

import {
  createModel,
  disposeTensors,
  loadTensors,
  saveTensors,
  tensor,
  TensorDataset,
  Trainer,
  type AdapterType,
  type Model,
  type Tensor,
  type TensorRecord,
} from '../lib';
import { relativeError } from './support/compare';
import { cpuBf16Refused, cpuBf16Runs } from './support/cpu-bf16';
import { fixture, fixtureAdaptedModel, fixtureIndex, fixtureSpec } from './support/fixtures';
import { saveCheckpointWithDigest } from './support/checkpoint-digest';
import { makeTempDir } from './support/paths';
import { testIf } from './support/test-if';

const index = fixtureIndex;
const temp = makeTempDir('pace');
afterAll(() => temp.cleanup());

const paceFixtures = Object.keys(index).filter((name) => index[name].kind === 'pace');

const specOf = fixtureSpec;

const adaptedModel = fixtureAdaptedModel;

function trainerFor(model: Model, name: string, seed = 0, precision: 'fp32' | 'bf16' = 'fp32'): Trainer {
  const fx = index[name];
  return new Trainer(model, {
    optimizer: { lr: fx.adamw.lr, weightDecay: fx.adamw.weight_decay },
    pace: { sigma: fx.sigma, lambda: fx.lambda, blockStart: fx.block_start },
    seed,
    precision,
  });
}

function prefixed(io: TensorRecord, prefix: string): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(io)
      .filter(([key]) => key.startsWith(prefix))
      .map(([key, value]) => [key.slice(prefix.length), value]),
  );
}

const scalar = (t: Tensor) => t.toFloat32Array()[0];
const relative = (ours: number, ref: number) => Math.abs(ours - ref) / (Math.abs(ref) + 1e-6);

describe.each(paceFixtures)('%s matches the PACE reference', (name) => {
  const fx = index[name];
  let io: TensorRecord;
  beforeAll(async () => {
    io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
  });
  afterAll(() => disposeTensors(io));

  test('the adapter and head parameters are exactly the reference trainables', async () => {
    using model = await adaptedModel(name);
    const expected = Object.keys(prefixed(io, 'grad.')).sort();
    expect([...model.trainableParameters()].sort()).toEqual(expected);
  });

  test('eval logits (adapters merged, no noise) within 1e-4', async () => {
    using model = await adaptedModel(name);
    using logits = await model.forward(io.input);
    expect(relativeError(logits, io.eval_logits)).toBeLessThan(1e-4);
    using plain = await model.merged();
    using mergedLogits = await plain.forward(io.input);
    expect(relativeError(mergedLogits, io.eval_logits)).toBeLessThan(1e-4);
  });

  test('σ per linear follows the reference schedule', async () => {
    using model = await adaptedModel(name);
    const sigma = trainerFor(model, name).sigmaPerLinear();
    const expected = fx.sigma_per_linear as Record<string, number>;
    if (Object.keys(expected).length === 0) {
      // The PEFT fixtures train without PACE (σ 0) and list no schedule: every linear is then un-noised.
      expect(fx.sigma).toBe(0);
      expect(Object.keys(sigma).length).toBeGreaterThan(0);
      expect(Object.entries(sigma).filter(([, value]) => value !== 0)).toEqual([]);
    } else {
      expect(Object.keys(sigma).sort()).toEqual(Object.keys(expected).sort());
      for (const [linear, value] of Object.entries(expected)) {
        expect([linear, sigma[linear]]).toEqual([linear, expect.closeTo(value, 12)]);
      }
    }
  });

  test('one step replaying the reference noise: losses 1e-5, gradients 1e-3, AdamW update 1e-5', async () => {
    using model = await adaptedModel(name);
    const trainer = trainerFor(model, name);
    const noise = prefixed(io, 'noise.');
    const step = await trainer.trainStep(io.input, io.target, { noise });
    expect(relative(step.clsLoss, scalar(io.cls_loss))).toBeLessThan(1e-5);
    expect(relative(step.totalLoss, scalar(io.total_loss))).toBeLessThan(1e-5);
    expect(Math.abs(step.paceLoss - scalar(io.pace_loss)) / (Math.abs(scalar(io.pace_loss)) + 1e-6)).toBeLessThan(1e-5);

    const gradients = model.gradients();
    for (const [param, reference] of Object.entries(prefixed(io, 'grad.'))) {
      // The parameter and its error in the failure message.
      const error = relativeError(gradients[param], reference);
      expect([param, error, error < 1e-3]).toEqual([param, error, true]);
    }

    const saved = path.join(temp.dir, `${name}.after.safetensors`);
    await model.saveAdapters(saved);
    const after = (await loadTensors(saved)).tensors;
    const lr: number = fx.adamw.lr;
    for (const [param, reference] of Object.entries(prefixed(io, 'after_adamw.'))) {
      const ours = after[param].toFloat32Array();
      const ref = reference.toFloat32Array();
      const refGrad = io[`grad.${param}`].toFloat32Array();
      const ourGrad = gradients[param].toFloat32Array();
      // Adam's first update is lr·g/(|g| + eps) (plus the decoupled decay, identical on both sides), so where |g| is
      // near eps the float32 round-off in a gradient is amplified: with g = 2.7e-8 against 2.8e-8 the updates
      // differ by 0.7 % of lr. Each element may differ by what the two gradients explain — by the mean value
      // theorem at most lr·|g₁ − g₂|·eps/(min|g| + eps)² when the signs agree, else exactly the two updates' sizes
      // added, lr·(|g₁|/(|g₁| + eps) + |g₂|/(|g₂| + eps)) —
      // plus the half-ulp rounding of each stored result; what remains must be within 1e-5 of the largest value.
      // (The key part of a qkv bias has a mathematically zero gradient, since softmax ignores a shift shared by
      // all keys: both implementations hold round-off there, and the rule above covers it.)
      const keySlice = /attn\.qkv\.delta_b$/.test(param) ? [ref.length / 3, (2 * ref.length) / 3] : [0, 0];
      let maxRef = 0;
      let maxGrad = 0;
      for (let i = 0; i < ref.length; i++) {
        maxRef = Math.max(maxRef, Math.abs(ref[i]));
        maxGrad = Math.max(maxGrad, Math.abs(refGrad[i]));
      }
      const eps = 1e-8;
      let worst = 0;
      for (let i = 0; i < ref.length; i++) {
        if (i >= keySlice[0] && i < keySlice[1]) expect(Math.abs(refGrad[i])).toBeLessThan(1e-6 * maxGrad);
        const [g1, g2] = [ourGrad[i], refGrad[i]];
        const explained =
          Math.sign(g1) === Math.sign(g2)
            ? (lr * Math.abs(g1 - g2) * eps) / (Math.min(Math.abs(g1), Math.abs(g2)) + eps) ** 2
            : lr * (Math.abs(g1) / (Math.abs(g1) + eps) + Math.abs(g2) / (Math.abs(g2) + eps));
        const rounding = Math.abs(ref[i]) * 2 ** -23;
        const diff = Math.max(0, Math.abs(ours[i] - ref[i]) - explained - rounding);
        worst = Math.max(worst, diff / (maxRef + 1e-6));
      }
      expect([param, worst, worst < 1e-5]).toEqual([param, worst, true]);
    }
    disposeTensors(after);
    disposeTensors(gradients);
  });
});

describe.each(paceFixtures)('%s in bf16 (autocast on the CPU)', (name) => {
  testIf(cpuBf16Runs, cpuBf16Refused)(
    'losses within 2 % of the reference, every gradient tensor within 6 % of its own, the model left in float32',
    async () => {
      const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
      const adapters = (await loadTensors(fixture(`${name}.adapters.safetensors`))).tensors;
      using model = await adaptedModel(name);
      const step = await trainerFor(model, name, 0, 'bf16').trainStep(io.input, io.target, {
        noise: prefixed(io, 'noise.'),
      });
      expect(relative(step.clsLoss, scalar(io.cls_loss))).toBeLessThan(0.02);
      expect(relative(step.totalLoss, scalar(io.total_loss))).toBeLessThan(0.02);
      // Checked per tensor, so one small tensor with a wrong gradient cannot hide in an overall norm. bf16 keeps 8
      // significant bits (2^-9 relative rounding per element); through a dozen bf16 products a gradient lands a
      // few percent from float32, ‖g − ref‖ / ‖ref‖ per tensor measured at most 3.0 % (ViT, blocks.1.attn.proj.
      // delta_b); 6 % is allowed. A wrong term, factor or sign moves a tensor by far more.
      // The VPT prompts' [rank, 1] factors are the exception: their gradient is a sum that cancels, Σᵢ down[i, j]·uᵢ
      // with u = W0ᵀ·Σ(z ⊙ dY), so its rounding scales with Σᵢ |down[i, j]·uᵢ|, not with the result: measured up
      // to 17 % of the result on Swin, where the terms are 25 times larger, but at most 1.0 % of the terms. u comes
      // from the reference itself, grad(down)[i, k] = uᵢ·up[k]. Each such element may differ by 3 % of its terms.
      const gradients = model.gradients();
      const rows = (t: Tensor) => t.shape[0];
      for (const [param, reference] of Object.entries(prefixed(io, 'grad.'))) {
        expect(gradients[param].dtype).toBe('float32');
        const ours = gradients[param].toFloat64Array();
        const ref = reference.toFloat64Array();
        if (param.endsWith('.delta_prompt_up')) {
          const base = param.slice(0, -'up'.length);
          const up = adapters[param].toFloat64Array();
          const down = adapters[`${base}down`].toFloat64Array();
          const downGrad = io[`grad.${base}down`].toFloat64Array();
          const rank = up.length;
          const k = up.reduce((best, v, i) => (Math.abs(v) > Math.abs(up[best]) ? i : best), 0);
          for (let j = 0; j < rank; j++) {
            let terms = 0;
            for (let i = 0; i < rows(adapters[`${base}down`]); i++) {
              terms += Math.abs(down[i * rank + j] * (downGrad[i * rank + k] / up[k]));
            }
            // The reference's own gradient is that sum: a check that u was recovered right.
            expect(terms).toBeGreaterThanOrEqual(Math.abs(ref[j]) * (1 - 1e-4));
            const error = Math.abs(ours[j] - ref[j]) / terms;
            expect([param, j, error, error < 0.03]).toEqual([param, j, error, true]);
          }
          continue;
        }
        let squaredError = 0;
        let squaredReference = 0;
        for (let i = 0; i < ref.length; i++) {
          squaredError += (ours[i] - ref[i]) ** 2;
          squaredReference += ref[i] ** 2;
        }
        const error = Math.sqrt(squaredError / squaredReference);
        expect([param, error, error < 0.06]).toEqual([param, error, true]);
      }
      // The frozen backbone's bf16 copies are only lent to the step: the model's weights stay float32.
      using logits = await model.forward(io.input);
      expect(logits.dtype).toBe('float32');
      disposeTensors(gradients);
      disposeTensors(adapters);
      disposeTensors(io);
    },
  );
});

describe("the reference's delta_b on a linear without a bias (Swin's downsample.reduction)", () => {
  const name = 'pace_swin_loramul_vptadd';
  const reduction = 'layers.1.downsample.reduction';
  const shiftOf = (width: number) => tensor(Float32Array.from({ length: width }, (_, i) => 0.05 * Math.sin(i + 1)));

  /** An adapter file of `model` with `edit` applied (a tensor to set, or undefined to leave one out). */
  async function editedAdapters(model: Model, file: string, edit: Record<string, Tensor | undefined>): Promise<void> {
    await model.saveAdapters(file);
    const { tensors } = await loadTensors(file);
    for (const [key, value] of Object.entries(edit)) {
      tensors[key]?.dispose();
      if (value) tensors[key] = value;
      else delete tensors[key];
    }
    await saveTensors(file, tensors);
    disposeTensors(tensors);
  }

  test("LoRA-add's delta_b is a trained shift there, as the reference's LoRAadd_Linear: the same as a bias", async () => {
    // Bug: loraadd (and loraadd_vptadd) left delta_b out where the linear has no bias: a trainable shift the
    // reference has was missing (1,792 parameters on Swin-B) and converted reference files were refused.
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    const base = await loadTensors(fixture(`${name}.base.safetensors`));
    for (const type of ['loraadd', 'loraadd_vptadd'] as const) {
      using model = await createModel(specOf(name), { pretrained: fixture(`${name}.base.safetensors`) });
      model.addAdapters({ type, rank: 2 });
      expect(model.trainableParameters()).toContain(`${reduction}.delta_b`);
      const width = base.tensors[`${reduction}.weight`].shape[0];
      const file = path.join(temp.dir, `${type}-shift.safetensors`);
      await editedAdapters(model, file, { [`${reduction}.delta_b`]: shiftOf(width) });
      await model.loadAdapters(file);
      // The adapter's low-rank product starts at zero (delta_W_down = 0; VPT's prompt_down too): delta_b alone acts,
      // as a bias of that value would.
      const withBias = path.join(temp.dir, `${type}-bias.safetensors`);
      await saveTensors(withBias, { ...base.tensors, [`${reduction}.bias`]: shiftOf(width) });
      using biased = await createModel(specOf(name), { pretrained: withBias });
      using ours = await model.forward(io.input);
      using expected = await biased.forward(io.input);
      expect(relativeError(ours, expected)).toBeLessThan(1e-5);
      using plain = await createModel(specOf(name), { pretrained: fixture(`${name}.base.safetensors`) });
      using unshifted = await plain.forward(io.input);
      expect(relativeError(ours, unshifted)).toBeGreaterThan(1e-3); // the shift moved the logits
      // A file of an earlier version, without it, loads as that version computed: delta_b zero.
      await editedAdapters(model, file, { [`${reduction}.delta_b`]: undefined });
      await model.loadAdapters(file);
      using older = await model.forward(io.input);
      expect(relativeError(older, unshifted)).toBeLessThan(1e-5);
    }
    disposeTensors(base.tensors);
    disposeTensors(io);
  });

  test('a training checkpoint of an earlier version, without that delta_b, resumes with it zero', async () => {
    // Bug caught (a review): loadAdapters took older LoRA-add files, but a resume said the checkpoint "lacks" it.
    const count = 8;
    const images = tensor(
      Float32Array.from({ length: count * 3 * 56 * 56 }, (_, i) => Math.sin(i / 7)),
      [count, 3, 56, 56],
    );
    const set = new TensorDataset(images, tensor(BigInt64Array.from({ length: count }, (_, i) => BigInt(i % 6))));
    const options = { epochs: 2, batchSize: 4, progress: false } as const;
    const dir = path.join(temp.dir, 'loraadd-earlier-run');
    const adapted = async () => {
      const model = await createModel(specOf(name), { pretrained: fixture(`${name}.base.safetensors`) });
      model.addAdapters({ type: 'loraadd', rank: 2 });
      return model;
    };
    {
      using model = await adapted();
      await new Trainer(model, { seed: 1 }).fit(set, { ...options, epochs: 1, runDir: dir });
    }
    for (const file of ['last.safetensors', 'previous.safetensors']) {
      const { tensors, metadata } = await loadTensors(path.join(dir, file));
      const older = Object.keys(tensors).filter((key) => key.includes(`${reduction}.delta_b`));
      expect(older.length).toBeGreaterThan(0);
      for (const key of older) tensors[key].dispose();
      for (const key of older) delete tensors[key];
      await saveCheckpointWithDigest(path.join(dir, file), tensors, metadata ?? {});
      disposeTensors(tensors);
    }
    using model = await adapted();
    const history = await new Trainer(model, { seed: 1 }).fit(set, { ...options, resume: dir });
    expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1]);
    expect(model.trainableParameters()).toContain(`${reduction}.delta_b`);
    images.dispose();
  });

  test("a reference LoRAmul+VPT-add file's unused delta_b there is accepted and has no effect; no other is", async () => {
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    using model = await fixtureAdaptedModel(name);
    expect(model.trainableParameters()).not.toContain(`${reduction}.delta_b`);
    using before = await model.forward(io.input);
    const file = path.join(temp.dir, 'reference-unused-delta-b.safetensors');
    const width = model.parameters().find((p) => p.name === `${reduction}.weight`)!.shape[0];
    await editedAdapters(model, file, { [`${reduction}.delta_b`]: shiftOf(width) });
    await model.loadAdapters(file);
    using after = await model.forward(io.input);
    expect(Array.from(after.toFloat32Array())).toEqual(Array.from(before.toFloat32Array()));
    await editedAdapters(model, file, { [`${reduction}.delta_b`]: tensor(new Float32Array(4), [2, 2]) });
    await expect(model.loadAdapters(file)).rejects.toThrow(
      `${reduction}.delta_b is not a trainable parameter of this model`,
    );
    await editedAdapters(model, file, { [`${reduction}.delta_W_up`]: undefined });
    await expect(model.loadAdapters(file)).rejects.toThrow(`${reduction}.delta_W_up is missing`);
    disposeTensors(io);
  });
});

describe('merging', () => {
  test('Swin merges its VPT shift on the bias-less downsample.reduction into an added bias', async () => {
    const name = 'pace_swin_loramul_vptadd';
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    using model = await adaptedModel(name);
    using plain = await model.merged();
    expect(plain.parameters().map((p) => p.name)).toContain('layers.1.downsample.reduction.bias');
    const file = path.join(temp.dir, 'merged-swin.safetensors');
    await plain.saveWeights(file);
    using reloaded = await createModel(specOf(name), { pretrained: file });
    expect(reloaded.loadReport?.loaded).toContain('layers.1.downsample.reduction.bias');
    using logits = await reloaded.forward(io.input);
    expect(relativeError(logits, io.eval_logits)).toBeLessThan(1e-4);
    // Fine-tuning goes on from the merged file: merging and saving again keep the bias it brought (they failed
    // with "Key 'layers.1.downsample.reduction.bias' is not defined").
    using again = await reloaded.merged();
    using againLogits = await again.forward(io.input);
    // Merging a model without adapters changes nothing: the same sums in the same order (the reference's own
    // tolerance is the 1e-4 above, which another CPU's BLAS kernels may use more of).
    expect(relativeError(againLogits, logits)).toBeLessThan(1e-6);
    reloaded.addAdapters({ type: 'loraadd_vptadd', rank: 2 });
    using adaptedLogits = await reloaded.forward(io.input);
    const second = path.join(temp.dir, 'merged-swin-again.safetensors');
    await reloaded.saveWeights(second);
    using secondModel = await createModel(specOf(name), { pretrained: second });
    using secondLogits = await secondModel.forward(io.input);
    expect(relativeError(secondLogits, adaptedLogits)).toBeLessThan(1e-5);
    // Weights without the bias (timm's own) then load whole, and the bias goes: it was kept, so a strict load
    // named it missing and a partial one computed with a stale shift (13 % off).
    using timmLike = await createModel(specOf(name), { seed: 1 });
    const plainFile = path.join(temp.dir, 'plain-swin.safetensors');
    await timmLike.saveWeights(plainFile);
    const report = await secondModel.loadWeights(plainFile);
    expect([report.missing, report.unexpected]).toEqual([[], []]);
    expect(secondModel.parameters().map((p) => p.name)).not.toContain('layers.1.downsample.reduction.bias');
    using reloadedPlain = await secondModel.forward(io.input);
    using expectedPlain = await timmLike.forward(io.input);
    expect(Array.from(reloadedPlain.toFloat32Array())).toEqual(Array.from(expectedPlain.toFloat32Array()));
    // A Trainer holds the parameters it was made with: after a load that adds one (this bias), it refuses to step
    // (it stepped on, leaving the trainable bias out of its optimizer and its gradient growing); a load that
    // keeps the layout leaves it working.
    using full = await createModel(specOf(name), { seed: 1 });
    full.addAdapters({ type: 'full' });
    const trainer = new Trainer(full);
    const batch = io.input.shape[0];
    using targets = tensor(new BigInt64Array(batch), [batch]);
    await full.loadWeights(plainFile);
    await expect(trainer.trainStep(io.input, targets)).resolves.toMatchObject({ counted: batch });
    // Not awaited, the load is queued first: the step, checked as it is called, is refused once it runs.
    const loading = full.loadWeights(second);
    await expect(trainer.trainStep(io.input, targets)).rejects.toThrow(
      "the model's parameters changed (addAdapters, or a load that added or dropped one)",
    );
    await loading;
    expect(full.trainableParameters()).toContain('layers.1.downsample.reduction.bias');
    await expect(trainer.trainStep(io.input, targets)).rejects.toThrow(
      "the model's parameters changed (addAdapters, or a load that added or dropped one)",
    );
    disposeTensors(io);
  });

  test("a load that would add or drop the bias an adapted linear's LoRA-mul scales is refused, the model unchanged", async () => {
    // Bug (review): LoRA-mul's δb scales the linear's bias. Adapted on the merged file's added bias, a load of
    // weights without it dropped it, and every forward after failed inside libtorch (an internal error); adapted
    // without it, a load adding it left it unscaled.
    const name = 'pace_swin_loramul_vptadd';
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    using model = await adaptedModel(name);
    using merged = await model.merged();
    const withBias = path.join(temp.dir, 'merged-swin-for-loramul.safetensors');
    await merged.saveWeights(withBias);
    // (without the record of the folded adapters, which a model with adapters would refuse before the bias check)
    const { tensors: mergedTensors } = await loadTensors(withBias);
    await saveTensors(withBias, mergedTensors);
    disposeTensors(mergedTensors);
    using timmLike = await createModel(specOf(name), { seed: 1 });
    const withoutBias = path.join(temp.dir, 'plain-swin-for-loramul.safetensors');
    await timmLike.saveWeights(withoutBias);
    const bias = 'layers.1.downsample.reduction.bias';
    for (const [start, other, had] of [
      [withBias, withoutBias, 'with this bias, which the checkpoint lacks'],
      [withoutBias, withBias, 'without this bias, which the checkpoint has'],
    ]) {
      using adapted = await createModel(specOf(name), { pretrained: start });
      adapted.addAdapters({ type: 'loramul_vptadd', rank: 2 });
      using before = await adapted.forward(io.input);
      await expect(adapted.loadWeights(other)).rejects.toThrow(
        `${bias}: the linear's adapters were added to it ${had} (load such weights before addAdapters)`,
      );
      using after = await adapted.forward(io.input);
      expect(Array.from(after.toFloat32Array())).toEqual(Array.from(before.toFloat32Array()));
      expect(adapted.parameters().some((p) => p.name === bias)).toBe(start === withBias);
    }
    // LoRA-add's δb is a shift of its own: its linear's bias may come and go
    using additive = await createModel(specOf(name), { pretrained: withBias });
    additive.addAdapters({ type: 'loraadd_vptadd', rank: 2 });
    await additive.loadWeights(withoutBias);
    expect(additive.parameters().some((p) => p.name === bias)).toBe(false);
    using additiveLogits = await additive.forward(io.input);
    expect(Array.from(additiveLogits.toFloat32Array()).every(Number.isFinite)).toBe(true);
    disposeTensors(io);
  });

  test('saveWeights of an adapted model writes the merged backbone, loadable by a plain model', async () => {
    const name = 'pace_vit_loramul_vptadd';
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    using model = await adaptedModel(name);
    const file = path.join(temp.dir, 'merged.safetensors');
    await model.saveWeights(file);
    using plain = await createModel(specOf(name), { pretrained: file });
    expect(plain.loadReport?.missing).toEqual([]);
    expect(plain.parameters().some((p) => p.name.includes('delta_'))).toBe(false);
    using logits = await plain.forward(io.input);
    expect(relativeError(logits, io.eval_logits)).toBeLessThan(1e-4);
    disposeTensors(io);
  });
});

describe('PACE properties', () => {
  const name = 'pace_vit_loramul_vptadd';
  let io: TensorRecord;
  beforeAll(async () => {
    io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
  });
  afterAll(() => disposeTensors(io));

  test('with σ = 0 the two copies agree to rounding and the PACE loss is 0, even with stochastic depth, wherever they are stacked', async () => {
    using model = await createModel(
      { ...specOf(name), dropPathRate: 0.5 },
      { pretrained: fixture(`${name}.base.safetensors`) },
    );
    model.addAdapters({ rank: 4 });
    await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
    // The copies are stacked before the first noisy block (blockStart; 3 = none, so before the head).
    for (const blockStart of [undefined, 0, 2, 3]) {
      const trainer = new Trainer(model, { pace: { sigma: 0, lambda: 1, blockStart } });
      for (let i = 0; i < 3; i++) {
        const step = await trainer.trainStep(io.input, io.target);
        // Stacked copies go through each GEMM as different rows, which a BLAS may round differently (its edge
        // tiles use other kernels): on an AMD Zen 5 with OpenBLAS's Haswell kernels the loss is ~1e-13 (float32
        // round-off in the logits, squared). A drop-path mask or noise not shared by the copies gives 1e-3 or more.
        expect([blockStart, step.paceLoss, step.paceLoss < 1e-10]).toEqual([blockStart, step.paceLoss, true]);
      }
    }
  });

  test("PACE's stochastic depth is the reference's SharableDropPath: the same draw, renormalised by its mean", async () => {
    // Bug: PACE steps scaled kept branches by 1/(1 − rate) as timm's DropPath; the reference's SharableDropPath
    // then divides the mask by its mean over the batch. With σ = 0 the first copy is the plain forward of the same
    // draw, so the cross-entropies agree without stochastic depth and differ with it (1/0.7 against B/k).
    const clsLosses = async (dropPathRate: number) => {
      const losses: number[] = [];
      for (const pace of [
        { sigma: 0, lambda: 0 },
        { sigma: 0, lambda: 1 },
      ]) {
        using model = await createModel(
          { ...specOf(name), dropPathRate },
          { pretrained: fixture(`${name}.base.safetensors`) },
        );
        model.addAdapters({ rank: 4 });
        await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
        losses.push((await new Trainer(model, { pace, seed: 5 }).trainStep(io.input, io.target)).clsLoss);
      }
      return losses;
    };
    const [plain, pace] = await clsLosses(0);
    expect(Math.abs(pace / plain - 1)).toBeLessThan(1e-5);
    const [plainDropped, paceDropped] = await clsLosses(0.3);
    expect(Math.abs(paceDropped / plainDropped - 1)).toBeGreaterThan(1e-3);
  });

  test('noise is one value per sample and channel, shared by all tokens (BTC draws per token)', async () => {
    using model = await adaptedModel(name);
    const trainer = trainerFor(model, name, 7);
    await trainer.trainStep(io.input, io.target);
    const draws = trainer.lastNoise();
    const batch = io.input.shape[0];
    expect(draws['blocks.1.mlp.fc1'].shape).toEqual([2 * batch, 1, 192]);
    expect(draws.head.shape).toEqual([2 * batch, 10]);
    expect(Object.keys(draws).some((key) => key.startsWith('blocks.0.'))).toBe(false);
    // Copies: writing through a view leaves the trainer's draws as they were (a replayed step graph would write
    // its next draws into the very tensors handed out, under the caller's feet).
    const before = Array.from(draws.head.toFloat32Array());
    (draws.head.view() as Float32Array).fill(0);
    expect(Array.from(trainer.lastNoise().head.toFloat32Array())).toEqual(before);

    using perToken = await adaptedModel(name);
    const tokenTrainer = new Trainer(perToken, { pace: { sigma: 1, lambda: 1, noiseShape: 'BTC' } });
    await tokenTrainer.trainStep(io.input, io.target);
    expect(tokenTrainer.lastNoise()['blocks.1.mlp.fc1'].shape).toEqual([2 * batch, 17, 192]);
  });

  test('a seed reproduces a step bit for bit, and replaying its noise reproduces it too', async () => {
    const run = async (seed: number, noise?: Record<string, Tensor>) => {
      using model = await createModel(
        { ...specOf(name), dropPathRate: 0.3 },
        { pretrained: fixture(`${name}.base.safetensors`) },
      );
      model.addAdapters({ rank: 4 });
      await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
      const trainer = trainerFor(model, name, seed);
      const step = await trainer.trainStep(io.input, io.target, { noise });
      const file = path.join(temp.dir, `seed-${seed}-${noise ? 'replay' : 'draw'}-${Math.random()}.safetensors`);
      await model.saveAdapters(file);
      return { step, bytes: fs.readFileSync(file), noise: trainer.lastNoise() };
    };
    const a = await run(11);
    const b = await run(11);
    const c = await run(12);
    expect(b.step).toEqual(a.step);
    expect(b.bytes.equals(a.bytes)).toBe(true);
    expect(c.step.totalLoss).not.toBe(a.step.totalLoss);
    const replayed = await run(11, a.noise);
    expect(replayed.step.paceLoss).toBe(a.step.paceLoss);
  });

  test('the ablation noises and schedules change what is drawn', async () => {
    using model = await adaptedModel(name);
    const shared = new Trainer(model, { pace: { sigma: 1.2, lambda: 1, sigmaSchedule: 'shared' } }).sigmaPerLinear();
    expect(
      new Set(
        Object.entries(shared)
          .filter(([k]) => !k.startsWith('blocks.0.'))
          .map(([, v]) => v),
      ),
    ).toEqual(new Set([1.2]));
    const rising = new Trainer(model, {
      pace: { sigma: 1.2, lambda: 1, sigmaSchedule: 'increasing' },
    }).sigmaPerLinear();
    expect(rising['blocks.1.attn.qkv']).toBeCloseTo(0.4, 12);
    expect(rising.head).toBeCloseTo(1.2, 12);
    const dropout = new Trainer(model, { pace: { sigma: 0.3, lambda: 1, noise: 'dropout' }, seed: 3 });
    await dropout.trainStep(io.input, io.target);
    const mask = dropout.lastNoise()['blocks.1.attn.qkv'].toFloat32Array();
    expect(new Set(mask)).toEqual(new Set([0, 1]));
  });
});

describe('bad input gets a clear error', () => {
  const name = 'pace_vit_loramul_vptadd';

  test('unknown adapter types, bad ranks, σ < 0 and λ < 0', async () => {
    using model = await createModel(specOf(name));
    expect(() => model.addAdapters({ type: 'lora' as AdapterType })).toThrow(/^options\.type: /);
    expect(() => model.addAdapters({ rank: 0 })).toThrow(/^options\.rank: /);
    expect(() => model.addAdapters({ rank: 49 })).toThrow(
      "adapter rank 49 does not fit linear 'blocks.0.attn.qkv' (48 -> 144)",
    );
    expect(() => model.addAdapters({ targets: ['attn.nope'] })).toThrow("adapter target 'attn.nope' names no Linear");
    model.addAdapters({ rank: 4 });
    expect(() => new Trainer(model, { pace: { sigma: -1 } })).toThrow(/^options\.pace\.sigma: /);
    expect(() => new Trainer(model, { pace: { lambda: -0.5 } })).toThrow(/^options\.pace\.lambda: /);
    expect(() => new Trainer(model, { precision: 'fp16' as 'bf16' })).toThrow(/^options\.precision: /);
  });

  testIf(!cpuBf16Runs, "this CPU's bf16 products sum in float32, so bf16 runs (tested above)")(
    "precision 'bf16' where the CPU's bf16 products sum in bf16: refused before anything runs, saying what to use",
    async () => {
      using model = await adaptedModel(name);
      const refusal =
        /^precision 'bf16' on this CPU: libtorch .* sums bf16 matrix products in bf16 here .* use precision 'fp32'/;
      expect(() => new Trainer(model, { precision: 'bf16' })).toThrow(refusal);
      using images = tensor(new Float32Array(2 * 3 * 32 * 32), [2, 3, 32, 32]);
      await expect(model.forward(images, { precision: 'bf16' })).rejects.toMatchObject({
        name: 'PaceOptionError',
        message: expect.stringMatching(refusal),
      });
      using logits = await model.forward(images);
      expect(logits.dtype).toBe('float32');
    },
  );

  test('adapters saved for another rank or type are refused, naming the config or the tensor and shapes', async () => {
    using rank4 = await adaptedModel(name);
    const file = path.join(temp.dir, 'rank4.safetensors');
    await rank4.saveAdapters(file);
    using rank2 = await createModel(specOf(name));
    rank2.addAdapters({ rank: 2 });
    await expect(rank2.loadAdapters(file)).rejects.toThrow(
      'holds loramul_vptadd adapters of rank 4; this model has loramul_vptadd of rank 2',
    );
    await expect(rank2.loadAdapters(fixture(`${name}.adapters.safetensors`))).rejects.toThrow(
      /does not fit this model .*blocks\.0\.attn\.proj\.delta_W_down: the model has \[48,2\], the file \[48,4\]/,
    );
    using swin = await createModel(specOf('pace_swin_loramul_vptadd'));
    swin.addAdapters({ rank: 4 });
    await expect(swin.loadAdapters(fixture(`${name}.adapters.safetensors`))).rejects.toThrow(/is missing/);
  });

  test('an adapter file whose tensors are integers is refused, naming the tensor and its dtype', async () => {
    using model = await adaptedModel(name);
    const file = path.join(temp.dir, 'int64-adapters.safetensors');
    await model.saveAdapters(file);
    const { tensors, metadata } = await loadTensors(file);
    const victim = Object.keys(tensors).sort()[0];
    // Every other tensor moved by 0.5 from the model's own: a load that wrote them before refusing would show.
    for (const name of Object.keys(tensors).filter((key) => key !== victim)) {
      const moved = tensor(
        tensors[name].toFloat32Array().map((v) => v + 0.5),
        tensors[name].shape,
      );
      tensors[name].dispose();
      tensors[name] = moved;
    }
    const values = tensors[victim].toFloat64Array();
    tensors[victim].dispose();
    tensors[victim] = tensor(
      BigInt64Array.from(values, (v) => BigInt(Math.round(v))),
      [...model.parameters().find((p) => p.name === victim)!.shape],
    );
    await saveTensors(file, tensors, { metadata: metadata ?? {} });
    disposeTensors(tensors);
    const before = path.join(temp.dir, 'before-int64.safetensors');
    await model.saveAdapters(before);
    await expect(model.loadAdapters(file)).rejects.toThrow(`${victim}: expected a float tensor, the file has int64`);
    const after = path.join(temp.dir, 'after-int64.safetensors');
    await model.saveAdapters(after);
    expect(fs.readFileSync(after).equals(fs.readFileSync(before))).toBe(true);
  });

  test('noise of the wrong shape or for an unknown linear, and bad targets', async () => {
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    using model = await adaptedModel(name);
    const trainer = trainerFor(model, name);
    using wrong = tensor(new Float32Array(8 * 144), [8, 144]);
    await expect(trainer.trainStep(io.input, io.target, { noise: { 'blocks.1.attn.qkv': wrong } })).rejects.toThrow(
      "noise for 'blocks.1.attn.qkv' has shape [8,144], expected [8,1,144]",
    );
    await expect(trainer.trainStep(io.input, io.target, { noise: { 'blocks.0.attn.qkv': wrong } })).rejects.toThrow(
      "'blocks.0.attn.qkv', which is not a noisy linear",
    );
    using outOfRange = tensor([0, 1, 2, 10], undefined, { dtype: 'int64' });
    await expect(trainer.trainStep(io.input, outOfRange)).rejects.toThrow(
      'targets must lie in [0, 10); got values from 0 to 10',
    );
    using floats = tensor([0, 1, 2, 3]);
    await expect(trainer.trainStep(io.input, floats)).rejects.toThrow(
      'targets must be an int64 tensor [4] of class indices; got float32 [4]',
    );
    disposeTensors(io);
  });

  test('without adapters every parameter trains (full fine-tuning), as in PyTorch', async () => {
    using model = await createModel(specOf(name));
    expect(model.trainableParameters()).toEqual(model.parameters().map((p) => p.name));
    using probe = await createModel(specOf(name));
    expect(probe.addAdapters({ type: 'linear' })).toEqual(['head.weight', 'head.bias']);
  });
});

describe('variants and diagnostics', () => {
  const name = 'pace_vit_loramul_vptadd';
  let io: TensorRecord;
  beforeAll(async () => {
    io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
  });
  afterAll(() => disposeTensors(io));

  const squaredDistance = (a: Tensor, b: Tensor | null) => {
    const x = a.toFloat64Array();
    const y = b?.toFloat64Array();
    const [rows, cols] = a.shape;
    let total = 0;
    for (let i = 0; i < rows * cols; i++) total += (x[i] - (y ? y[i] : 0)) ** 2;
    return total / rows;
  };

  test('lazy: every k-th step is PACE on the first half of the batch, the others one noisy forward', async () => {
    using model = await adaptedModel(name);
    const lazy = new Trainer(model, { pace: { sigma: 1.2, lambda: 1, variant: 'lazy', lazyInterval: 2 }, seed: 5 });
    const first = await lazy.trainStep(io.input, io.target);
    const batch = io.input.shape[0];
    expect(first.counted).toBe(batch / 2);
    expect(first.paceLoss).toBeGreaterThan(0);
    const halfNoise = lazy.lastNoise();
    expect(halfNoise['blocks.1.mlp.fc1'].shape).toEqual([batch, 1, 192]); // two copies of half the batch
    const second = await lazy.trainStep(io.input, io.target);
    expect(second.counted).toBe(batch);
    expect(second.paceLoss).toBe(0);
    expect(lazy.lastNoise()['blocks.1.mlp.fc1'].shape).toEqual([batch, 1, 192]); // one noisy copy of it all

    // The lazy step equals a plain PACE step on the first half with the same noise.
    using reference = await adaptedModel(name);
    const pace = new Trainer(reference, { pace: { sigma: 1.2, lambda: 1 } });
    using half = tensor(io.input.toFloat32Array().slice(0, io.input.size / 2), [batch / 2, 3, 32, 32]);
    using halfTargets = tensor(io.target.toBigInt64Array().slice(0, batch / 2));
    const replay = await pace.trainStep(half, halfTargets, { noise: halfNoise });
    expect(replay.totalLoss).toBe(first.totalLoss);
  });

  test("fast: consistency with the logits of each sample's previous visit (zeros on the first)", async () => {
    using model = await adaptedModel(name);
    const batch = io.input.shape[0];
    const fast = new Trainer(model, { pace: { sigma: 0, lambda: 1, variant: 'fast', datasetSize: 10 } });
    using indices = tensor([7, 2, 9, 0], undefined, { dtype: 'int64' });
    using before = await model.forward(io.input);
    const first = await fast.trainStep(io.input, io.target, { indices });
    expect(first.paceLoss).toBeCloseTo(squaredDistance(before, null), 3);
    expect(Math.abs(first.paceLoss - squaredDistance(before, null)) / first.paceLoss).toBeLessThan(1e-5);
    using after = await model.forward(io.input);
    const second = await fast.trainStep(io.input, io.target, { indices });
    expect(Math.abs(second.paceLoss - squaredDistance(after, before)) / second.paceLoss).toBeLessThan(1e-3);
    expect(batch).toBe(4);
    await expect(fast.trainStep(io.input, io.target)).rejects.toThrow("needs each sample's index");
    using outside = tensor([7, 2, 9, 10], undefined, { dtype: 'int64' });
    await expect(fast.trainStep(io.input, io.target, { indices: outside })).rejects.toThrow('[0, 10)');
    expect(() => new Trainer(model, { pace: { sigma: 1, lambda: 1, variant: 'fast' } })).toThrow(
      'options.pace.datasetSize: the fast variant needs datasetSize',
    );
  });

  test('fpa aligns with the frozen backbone; diagnostics give the gradient norm and the FP-distance', async () => {
    // The FP-distance recomputed in float64: the final norm's class token of the adapted model and of the plain
    // backbone (from base.safetensors, no adapters), each through the adapted model's current head, then
    // mean over the batch of Σ_classes (f − f₀)². Checked before the first and the second update, so a frozen
    // target kept from the first step, a head other than the current one or another reduction all fail.
    using model = await adaptedModel(name);
    using backbone = await createModel(specOf(name), { pretrained: fixture(`${name}.base.safetensors`) });
    using frozenFeatures = await backbone.forwardFeatures(io.input);
    const expectedDistance = async () => {
      const file = path.join(temp.dir, `fpa-${Math.random()}.safetensors`);
      await model.saveAdapters(file);
      const trainables = (await loadTensors(file)).tensors;
      const weight = trainables['head.weight'].toFloat64Array();
      const bias = trainables['head.bias'].toFloat64Array();
      const [classes, dim] = trainables['head.weight'].shape;
      disposeTensors(trainables);
      using features = await model.forwardFeatures(io.input);
      const [batch, tokens] = features.shape;
      const tuned = features.toFloat64Array();
      const frozen = frozenFeatures.toFloat64Array();
      let total = 0;
      for (let b = 0; b < batch; b++) {
        const cls = b * tokens * dim; // token 0: timm's global_pool 'token'
        for (let c = 0; c < classes; c++) {
          let f = bias[c];
          let f0 = bias[c];
          for (let d = 0; d < dim; d++) {
            f += weight[c * dim + d] * tuned[cls + d];
            f0 += weight[c * dim + d] * frozen[cls + d];
          }
          total += (f - f0) ** 2;
        }
      }
      return total / batch;
    };
    const fpa = new Trainer(model, { optimizer: { lr: 1e-2 }, pace: { sigma: 0, lambda: 1, variant: 'fpa' } });
    for (let s = 0; s < 2; s++) {
      const expected = await expectedDistance();
      const step = await fpa.trainStep(io.input, io.target, { diagnostics: true });
      // Without noise or stochastic depth the training forward equals the eval one: FPA's loss is the FP-distance.
      // float32 logits of size |f| differ by ~1e-7·|f|, squared differences of f − f₀ a hundredth of f: 1e-5 is ample.
      expect([s, relative(step.paceLoss, expected)]).toEqual([s, expect.closeTo(0, 5)]);
      expect([s, relative(step.fpDistance ?? NaN, expected)]).toEqual([s, expect.closeTo(0, 5)]);
      expect(step.totalLoss).toBeCloseTo(step.clsLoss + step.paceLoss, 5);
      if (s === 0) {
        const gradients = model.gradients();
        let squares = 0;
        for (const g of Object.values(gradients)) for (const v of g.toFloat64Array()) squares += v * v;
        expect(Math.abs((step.gradNorm ?? 0) - Math.sqrt(squares)) / Math.sqrt(squares)).toBeLessThan(1e-6);
        disposeTensors(gradients);
      }
    }
    const plain = await fpa.trainStep(io.input, io.target);
    expect(plain.gradNorm).toBeUndefined();
    expect(plain.fpDistance).toBeUndefined();
  });
});
