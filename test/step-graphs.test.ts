// Whole-step graphs in fit (`stepGraphs`). The capture itself needs CUDA with libtorch >= 2.4 (bench/device.sh checks
// it there); here the graph path runs with its eager stand-in (`rehearse`): the same static input buffers, warm-ups,
// one "capture" per kind of step, replays, output copies and optimizer bookkeeping. A run through it must be
// bit-identical to the plain eager run with the same seed, and the epochs must say how their steps ran.
import { tensor, Trainer, type EpochLogs, type FitOptions, type Model, type TrainerOptions } from '../lib';
import { cpuBf16Refused, cpuBf16Runs } from './support/cpu-bf16';
import { makeTempDir } from './support/paths';
import { colourData, colourDataset, tinyVit } from './support/synthetic';
import { testIf } from './support/test-if';
import { sharedTinyModel } from './support/tiny-models';

const temp = makeTempDir('step-graphs');
afterAll(() => temp.cleanup());

const spec = { ...tinyVit, dropPathRate: 0.1 };
const train = colourDataset(48, 4); // 6 steps of 8 per epoch
const { freshModel, adapterBytes } = sharedTinyModel(temp.dir, spec);

interface Run {
  epochs: EpochLogs[];
  /** Each step's loss by 'epoch:step', as progress reports it (one step late); reports arriving after their
   * epoch's end are dropped by fit, so a run holds most of them, not all. */
  batchLosses: Map<string, number>;
  adapters: Buffer;
}

async function fitWith(
  name: string,
  trainerOptions: TrainerOptions,
  fit: Partial<FitOptions>,
  withModel?: (model: Model) => void,
): Promise<Run> {
  using model = await freshModel();
  withModel?.(model);
  const trainer = new Trainer(model, trainerOptions);
  const batchLosses = new Map<string, number>();
  let epoch = 0;
  const history = await trainer.fit(train, {
    epochs: 2,
    batchSize: 8,
    progress: false,
    evalEvery: 100,
    callbacks: [
      {
        onEpochBegin: (e) => void (epoch = e),
        onBatchEnd: (step, logs) => batchLosses.set(`${epoch}:${step}`, logs.loss),
      },
    ],
    ...fit,
  });
  return { epochs: history.epochs, batchLosses, adapters: await adapterBytes(model, name) };
}

const lossesOf = (run: Run) => run.epochs.map(({ loss, clsLoss, paceLoss, acc }) => [loss, clsLoss, paceLoss, acc]);

const pace: TrainerOptions = {
  optimizer: { lr: 1e-2, clipGradNorm: 1 },
  pace: { sigma: 0.5, lambda: 0.3 },
  seed: 7,
};

async function graphPathMatchesEager(trainerOptions: TrainerOptions, fit: Partial<FitOptions>): Promise<void> {
  // Six epochs: from epoch 2 on, every step of each variant here is a replay (lazy's captures are in epoch 1).
  const eager = await fitWith('eager', trainerOptions, { ...fit, epochs: 6, stepGraphs: 'off' });
  const graphed = await fitWith('graphed', trainerOptions, { ...fit, epochs: 6, stepGraphs: 'rehearse' });
  // The graph path really ran: every step of the last four epochs a replay (a silent fall-back to eager steps
  // would match the eager run trivially).
  expect(graphed.epochs.slice(2).map((e) => e.stepGraphs)).toEqual(
    Array(4).fill({ warmups: 0, captured: 0, replayed: 6, eager: 0 }),
  );
  expect(lossesOf(graphed)).toEqual(lossesOf(eager));
  // Each read one step late, after the next replay wrote the graph's outputs again: they were copied out first.
  // Compared where both runs reported the step (progress arriving after its epoch's end is dropped by fit, often
  // the last step or two). Each step 0 to 4 of epochs 2 to 5 was read after a replay, and would show the next
  // step's loss without the copy: at least one of those 20 must be compared (most come in time; each that is
  // fails the test without the copy).
  const both = [...graphed.batchLosses.keys()].filter((key) => eager.batchLosses.has(key));
  const readAfterAReplay = both.filter((key) => {
    const [epoch, step] = key.split(':').map(Number);
    return epoch >= 2 && step <= 4;
  });
  expect(readAfterAReplay.length).toBeGreaterThanOrEqual(1);
  for (const key of both) expect([key, graphed.batchLosses.get(key)]).toEqual([key, eager.batchLosses.get(key)]);
  expect(graphed.adapters.equals(eager.adapters)).toBe(true);
  expect(eager.epochs[0].stepGraphs).toBeUndefined();
}

test.each([
  ['PACE, lr stepped every step', pace, { scheduleStepping: 'step' as const }],
  ['the lazy variant (two kinds of step)', { ...pace, pace: { ...pace.pace, variant: 'lazy' as const } }, {}],
  ['the FPA ablation', { ...pace, pace: { ...pace.pace, variant: 'fpa' as const } }, {}],
])('%s: the graph path gives the eager run bit for bit', (_name, trainerOptions, fit) =>
  graphPathMatchesEager(trainerOptions, fit),
);

testIf(cpuBf16Runs, cpuBf16Refused)('PACE in bf16: the graph path gives the eager run bit for bit', () =>
  graphPathMatchesEager({ ...pace, precision: 'bf16' }, {}),
);

test('each kind of step warms up three times, is captured once, then replayed', async () => {
  const plain = await fitWith('counts', pace, { stepGraphs: 'rehearse' });
  expect(plain.epochs.map((e) => e.stepGraphs)).toEqual([
    { warmups: 3, captured: 1, replayed: 2, eager: 0 },
    { warmups: 0, captured: 0, replayed: 6, eager: 0 },
  ]);
  // The lazy variant alternates consistency steps on half the batch with plain ones: two graphs.
  const lazy = await fitWith(
    'lazy',
    { ...pace, pace: { ...pace.pace, variant: 'lazy', lazyInterval: 2 } },
    {
      stepGraphs: 'rehearse',
    },
  );
  expect(lazy.epochs.map((e) => e.stepGraphs)).toEqual([
    { warmups: 6, captured: 0, replayed: 0, eager: 0 },
    { warmups: 0, captured: 2, replayed: 4, eager: 0 },
  ]);
});

test('steps a graph cannot hold run eagerly, and the epoch says why', async () => {
  const onCpu = await fitWith('cpu', pace, {});
  expect(onCpu.epochs[0].stepGraphs).toEqual({
    warmups: 0,
    captured: 0,
    replayed: 0,
    eager: 6,
    eagerReason: 'the model is on the cpu, not a CUDA device',
  });
  const cases: [TrainerOptions, Partial<FitOptions>, RegExp][] = [
    [pace, { diagnostics: true }, /diagnostics/],
    [{ ...pace, optimizer: { ...pace.optimizer, samRho: 0.05 } }, {}, /SAM/],
    [{ ...pace, pace: { ...pace.pace, variant: 'fast', datasetSize: 48 } }, {}, /fast variant/],
  ];
  for (const [trainerOptions, fit, reason] of cases) {
    const run = await fitWith('eager', trainerOptions, { ...fit, epochs: 1, stepGraphs: 'rehearse' });
    expect(run.epochs[0].stepGraphs).toMatchObject({ eager: 6, replayed: 0, captured: 0 });
    expect(run.epochs[0].stepGraphs?.eagerReason).toMatch(reason);
  }
});

test('stepGraphs takes auto, off or rehearse', async () => {
  using model = await freshModel();
  const trainer = new Trainer(model, pace);
  await expect(
    trainer.fit(train, { epochs: 1, batchSize: 8, progress: false, stepGraphs: 'always' as never }),
  ).rejects.toThrow(/stepGraphs/);
});

test('trainStep takes step graphs for loops of your own, and says how each step ran', async () => {
  const raw = colourData(48, 4);
  const pixels = 3 * 16 * 16;
  const run = async (stepGraphs: 'off' | 'rehearse' | 'auto') => {
    using model = await freshModel();
    const trainer = new Trainer(model, pace);
    const steps = [];
    for (let s = 0; s < 6; s++) {
      const images = tensor(raw.images.subarray(s * 8 * pixels, (s + 1) * 8 * pixels), [8, 3, 16, 16]);
      const labels = tensor(raw.labels.subarray(s * 8, (s + 1) * 8));
      steps.push(await trainer.trainStep(images, labels, { stepGraphs }));
      images.dispose();
      labels.dispose();
    }
    return { steps, adapters: await adapterBytes(model, stepGraphs) };
  };
  const [eager, graphed, onCpu] = [await run('off'), await run('rehearse'), await run('auto')];
  expect(graphed.steps.map((s) => s.graph)).toEqual(['warmup', 'warmup', 'warmup', 'captured', 'replayed', 'replayed']);
  expect(graphed.steps.map((s) => s.totalLoss)).toEqual(eager.steps.map((s) => s.totalLoss));
  expect(graphed.adapters.equals(eager.adapters)).toBe(true);
  expect(eager.steps[0].graph).toBeUndefined();
  expect(onCpu.steps[0].graph).toBe('eager: the model is on the cpu, not a CUDA device');
});
