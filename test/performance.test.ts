import {
  createModel,
  disposeTensors,
  fusedEpilogues,
  loadTensors,
  measureGemm,
  memoryStats,
  paceLinearStrategy,
  releaseCachedMemory,
  setFusedEpilogues,
  setPaceLinearStrategy,
  setThreads,
  tensor,
  threads,
  Trainer,
  type PaceLinearStrategy,
  type Tensor,
  type TensorRecord,
} from '../lib';
import { relativeError } from './support/compare';
import { fixture, fixtureAdaptedModel, fixtureIndex, fixtureSpec } from './support/fixtures';
import { seededRandom, tinyVit } from './support/synthetic';

afterAll(() => {
  setPaceLinearStrategy('auto');
  setFusedEpilogues(true);
});

const scalar = (t: Tensor) => t.toFloat32Array()[0];
const noisyFixtures = Object.keys(fixtureIndex).filter(
  (name) => fixtureIndex[name].kind === 'pace' && fixtureIndex[name].sigma > 0,
);

interface StepOutcome {
  losses: number[];
  gradients: TensorRecord;
}

/** One replayed PACE step of a fixture with the noisy linears computed the given way. */
async function fixtureStep(
  name: string,
  io: TensorRecord,
  strategy: PaceLinearStrategy,
  epiloguesFused = true,
): Promise<StepOutcome> {
  const fx = fixtureIndex[name];
  setPaceLinearStrategy(strategy);
  setFusedEpilogues(epiloguesFused);
  using model = await createModel(fixtureSpec(name), { pretrained: fixture(`${name}.base.safetensors`) });
  model.addAdapters({ type: 'loramul_vptadd', rank: fx.rank });
  await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
  const trainer = new Trainer(model, {
    optimizer: { lr: fx.adamw.lr, weightDecay: fx.adamw.weight_decay },
    pace: { sigma: fx.sigma, lambda: fx.lambda, blockStart: fx.block_start },
  });
  const noise = Object.fromEntries(
    Object.entries(io)
      .filter(([key]) => key.startsWith('noise.'))
      .map(([key, value]) => [key.slice('noise.'.length), value]),
  );
  const step = await trainer.trainStep(io.input, io.target, { noise });
  return { losses: [step.clsLoss, step.paceLoss, step.totalLoss], gradients: model.gradients() };
}

describe.each(noisyFixtures)('%s: every formulation of the noisy linears gives the same step', (name) => {
  let io: TensorRecord;
  let unfused: StepOutcome;
  beforeAll(async () => {
    io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    unfused = await fixtureStep(name, io, 'unfused');
  });
  afterAll(() => {
    disposeTensors(io);
    disposeTensors(unfused.gradients);
  });

  // 'stacked' folds the GELU and the residual adds into its element-wise pass; with the epilogues apart it does not.
  test.each([
    ['per-row', true],
    ['stacked', true],
    ['stacked', false],
    ['auto', true],
  ] as const)(
    '%s (epilogues fused: %s): losses within 1e-4 of the unfused step and 1e-5 of the reference, gradients within 1e-3 of both',
    async (strategy, epiloguesFused) => {
      const fused = await fixtureStep(name, io, strategy, epiloguesFused);
      const reference = [scalar(io.cls_loss), scalar(io.pace_loss), scalar(io.total_loss)];
      fused.losses.forEach((loss, i) => {
        expect(Math.abs(loss - unfused.losses[i]) / (Math.abs(unfused.losses[i]) + 1e-6)).toBeLessThan(1e-4);
        expect(Math.abs(loss - reference[i]) / (Math.abs(reference[i]) + 1e-6)).toBeLessThan(1e-5);
      });
      expect(Object.keys(fused.gradients).sort()).toEqual(Object.keys(unfused.gradients).sort());
      expect(Object.keys(fused.gradients).length).toBeGreaterThan(0);
      for (const [param, gradient] of Object.entries(fused.gradients)) {
        const error = relativeError(gradient, unfused.gradients[param]);
        expect([param, Number.isFinite(error)]).toEqual([param, true]); // names a parameter whose error is NaN
        expect(error).toBeLessThan(1e-3);
        expect(relativeError(gradient, io[`grad.${param}`])).toBeLessThan(1e-3);
      }
      disposeTensors(fused.gradients);
    },
  );
});

// With stochastic depth the fused residual epilogue draws each block's mask itself: it must draw the masks the
// separate ops draw (same generator, same order, same dtype), or the two steps part by far more than rounding.
test.each(['pace_vit_loramul_vptadd', 'pace_swin_loramul_vptadd'])(
  '%s with drop path 0.3: the stacked step (epilogues fused) equals the unfused one',
  async (name) => {
    const { tensors: io } = await loadTensors(fixture(`${name}.io.safetensors`));
    const step = async (strategy: PaceLinearStrategy) => {
      setPaceLinearStrategy(strategy);
      using model = await fixtureAdaptedModel(name, { dropPathRate: 0.3 });
      const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, seed: 5 });
      const result = await trainer.trainStep(io.input, io.target);
      return { losses: [result.clsLoss, result.paceLoss], gradients: model.gradients() };
    };
    try {
      const unfused = await step('unfused');
      const stacked = await step('stacked');
      stacked.losses.forEach((loss, i) =>
        expect(Math.abs(loss - unfused.losses[i]) / Math.abs(unfused.losses[i])).toBeLessThan(1e-4),
      );
      expect(Object.keys(stacked.gradients).sort()).toEqual(Object.keys(unfused.gradients).sort());
      expect(Object.keys(stacked.gradients).length).toBeGreaterThan(0);
      for (const [param, gradient] of Object.entries(stacked.gradients))
        expect([param, relativeError(gradient, unfused.gradients[param]) < 1e-3]).toEqual([param, true]);
      // The masks really dropped something: without them the losses differ.
      const kept = await (async () => {
        setPaceLinearStrategy('unfused');
        using model = await fixtureAdaptedModel(name, { dropPathRate: 0 });
        const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, seed: 5 });
        return (await trainer.trainStep(io.input, io.target)).clsLoss;
      })();
      expect(Math.abs(kept - unfused.losses[0]) / Math.abs(unfused.losses[0])).toBeGreaterThan(1e-3);
      disposeTensors(unfused.gradients);
      disposeTensors(stacked.gradients);
    } finally {
      setPaceLinearStrategy('auto');
      disposeTensors(io);
    }
  },
);

test('the PACE linear strategy is process-wide, validated and reported back', () => {
  setPaceLinearStrategy('per-row');
  expect(paceLinearStrategy()).toBe('per-row');
  setPaceLinearStrategy('auto');
  expect(paceLinearStrategy()).toBe('auto');
  expect(() => setPaceLinearStrategy('fastest' as PaceLinearStrategy)).toThrow(/^strategy: Invalid option/);
});

test('fused epilogues are on by default, switched process-wide and validated', () => {
  expect(fusedEpilogues()).toBe(true);
  setFusedEpilogues(false);
  expect(fusedEpilogues()).toBe(false);
  setFusedEpilogues(true);
  expect(fusedEpilogues()).toBe(true);
  expect(() => setFusedEpilogues('yes' as unknown as boolean)).toThrow(/^fused: /);
});

test('setThreads reaches the worker threads that run model calls, and is validated', async () => {
  const before = threads();
  expect(before.available).toBeGreaterThanOrEqual(1);
  expect(before.intraOp).toBeGreaterThanOrEqual(1);
  try {
    setThreads(1);
    expect(threads().intraOp).toBe(1);
    // measureGemm runs on a libuv worker thread and reports the intra-op threads it found there.
    expect((await measureGemm({ size: 64, seconds: 0 })).threads).toBe(1);
    setThreads(2);
    expect((await measureGemm({ size: 64, seconds: 0 })).threads).toBe(2);
    expect((await measureGemm({ size: 64, seconds: 0, threads: 1 })).threads).toBe(1);
    expect(threads().intraOp).toBe(2); // a measurement's own thread count does not stick
  } finally {
    setThreads(before.intraOp);
  }
  expect(() => setThreads(0)).toThrow(/^intraOp: /);
  expect(() => setThreads(1.5)).toThrow(/^intraOp: /);
});

test('large CPU blocks freed by a training step are reused by the next, and can be released', async () => {
  // 96×96 images in 8×8 patches: 145 tokens per sample, so the per-row formulation runs too.
  using model = await createModel({ ...tinyVit, imgSize: 96, embedDim: 64, numClasses: 4 });
  model.addAdapters({ type: 'loramul_vptadd', rank: 4 });
  const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 } });
  const random = seededRandom(5);
  using images = tensor(
    Float32Array.from({ length: 16 * 3 * 96 * 96 }, () => random() * 2 - 1),
    [16, 3, 96, 96],
  );
  using targets = tensor(
    BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i % 4)),
    [16],
  );
  await trainer.trainStep(images, targets);
  const afterFirst = memoryStats();
  await trainer.trainStep(images, targets);
  const afterSecond = memoryStats();
  const hits = afterSecond.cpuCacheHits - afterFirst.cpuCacheHits;
  expect(hits).toBeGreaterThan(10);
  // The second step finds (nearly) everything it needs in the cache: few new blocks from the system.
  expect(afterSecond.cpuCacheMisses - afterFirst.cpuCacheMisses).toBeLessThan(hits / 4);
  expect(afterSecond.cpuCacheBytes).toBeGreaterThan(0);
  // Without a GPU nothing is skipped: true, and the CPU cache is empty.
  expect(releaseCachedMemory()).toBe(true);
  expect(memoryStats().cpuCacheBytes).toBe(0);
});
