// Calls a user can get wrong through the public API, each refused with an error that names what is wrong (or, for
// the lifetimes of models and trainers, with the state kept consistent), found by a review of the API's edges.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  augmentImages,
  cosineSchedule,
  createModel,
  doctor,
  initDistributed,
  PaceBusyError,
  PaceInputError,
  PaceOptionError,
  PaceShapeError,
  PaceStateError,
  PaceUnsupportedError,
  prepareImages,
  resizedCropImages,
  saveTensors,
  Model,
  Tensor,
  tensor,
  TensorDataset,
  Trainer,
} from '../lib';
import { nativeAddon } from '../lib/native';
import { makeTempDir, repoRoot } from './support/paths';
import { colourDataset, tinyVit } from './support/synthetic';

const temp = makeTempDir('pace-api-guards-');
afterAll(() => temp.cleanup());

const images = (batch: number, dtype: 'float32' | 'float64' = 'float32') =>
  tensor(
    new Float32Array(batch * 3 * 16 * 16).map((_, i) => Math.sin(i)),
    [batch, 3, 16, 16],
    { dtype },
  );
const labels = (values: number[]) => tensor(BigInt64Array.from(values, BigInt));

async function adaptedModel(spec = {}): Promise<Model> {
  const model = await createModel({ ...tinyVit, ...spec }, { seed: 1 });
  model.addAdapters({ rank: 2 });
  return model;
}

describe('trainers and the models they train', () => {
  test('a trainer made before addAdapters() refuses to step instead of silently training only the head', async () => {
    using model = await createModel(tinyVit, { seed: 1 });
    const early = new Trainer(model); // a fresh model trains every parameter
    model.addAdapters({ rank: 2 });
    using x = images(4);
    using y = labels([0, 1, 2, 3]);
    await expect(early.trainStep(x, y)).rejects.toThrow(
      new PaceStateError(
        "the model's parameters changed (addAdapters, or a load that added or dropped one) after this Trainer was made, so its optimizer would not train them as they are: create the Trainer after addAdapters() and loads",
      ),
    );
    await expect(new Trainer(model).trainStep(x, y)).resolves.toMatchObject({ counted: 4 });
  });

  test('a trainer whose model was disposed refuses every call', async () => {
    const model = await adaptedModel();
    const trainer = new Trainer(model);
    model.dispose();
    using x = images(4);
    using y = labels([0, 1, 2, 3]);
    await expect(trainer.trainStep(x, y)).rejects.toThrow(
      new PaceStateError("the trainer's Model was disposed; the trainer cannot use it"),
    );
    expect(() => trainer.setLearningRate(0.1)).toThrow(PaceStateError);
    expect(() => trainer.lastNoise()).toThrow(PaceStateError);
    const runDir = path.join(temp.dir, 'disposed-model');
    await expect(trainer.fit(colourDataset(8, 3), { epochs: 1, batchSize: 4, runDir })).rejects.toThrow(PaceStateError);
    expect(fs.existsSync(runDir)).toBe(false); // refused before the run folder is made
  });

  test('trainStep and fit leave the model in the mode it was in, so forwards after them are deterministic', async () => {
    using model = await adaptedModel({ dropPathRate: 0.5 });
    const trainer = new Trainer(model, { pace: { sigma: 0.5, lambda: 1 } });
    using x = images(4);
    using y = labels([0, 1, 2, 3]);
    expect(model.training).toBe(false);
    await trainer.trainStep(x, y);
    expect(model.training).toBe(false);
    await trainer.fit(colourDataset(8, 3), { epochs: 1, batchSize: 4 });
    expect(model.training).toBe(false);
    using a = await model.forward(x);
    using b = await model.forward(x);
    expect(Array.from(a.toFloat32Array())).toEqual(Array.from(b.toFloat32Array()));
    model.train();
    await trainer.trainStep(x, y);
    expect(model.training).toBe(true); // and a model in training mode stays there
  });

  test('dispose() frees the optimizer state it reported to V8; a disposed trainer refuses every call', async () => {
    using model = await createModel(tinyVit, { seed: 1 });
    model.addAdapters({ type: 'full' });
    const before = nativeAddon().externalMemory();
    const trainer = new Trainer(model);
    const reported = nativeAddon().externalMemory() - before;
    expect(reported).toBe(3 * 4 * model.numParameters()); // AdamW's two moments and the gradients, float32
    trainer.dispose();
    expect(nativeAddon().externalMemory()).toBe(before);
    using x = images(2);
    using y = labels([0, 1]);
    await expect(trainer.trainStep(x, y)).rejects.toThrow(
      new PaceStateError('Trainer was disposed; it cannot be used any more'),
    );
    await expect(trainer.evaluate(colourDataset(4, 1))).rejects.toThrow(PaceStateError);
    using x2 = images(2);
    await expect(model.forward(x2)).resolves.toBeDefined(); // the model stays usable
    const beforeScoped = nativeAddon().externalMemory();
    {
      using scoped = new Trainer(model);
      expect(scoped.iteration).toBe(0);
    }
    expect(nativeAddon().externalMemory()).toBe(beforeScoped);
  });

  test("during a fit, outside calls to setLearningRate are refused; its callbacks read the model's device and mode", async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    let reachedEpochEnd!: () => void;
    const epochEnded = new Promise<void>((resolve) => (reachedEpochEnd = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const seen: string[] = [];
    // (That parameters() is refused while an epoch holds the model is fit.test.ts's, which retries the epoch when
    // every progress event came after it: here nothing could tell a late event from a missing refusal.)
    const fit = trainer.fit(colourDataset(128, 3), {
      epochs: 2,
      batchSize: 4,
      callbacks: [
        {
          onBatchEnd: () => void seen.push(`${model.device} ${model.training}`),
          onEpochEnd: async () => {
            reachedEpochEnd();
            await gate;
          },
        },
      ],
    });
    await epochEnded;
    expect(() => trainer.setLearningRate(1)).toThrow(PaceBusyError);
    release();
    const history = await fit;
    expect(history.epochs).toHaveLength(2);
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen)).toEqual(new Set(['cpu false'])); // the mode set from JavaScript, read without a lock
  });

  test('bad callbacks or signal are refused before the run folder is touched', async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    const runDir = path.join(temp.dir, 'callbacks');
    const train = colourDataset(8, 3);
    await expect(trainer.fit(train, { epochs: 1, batchSize: 4, runDir, callbacks: [null as never] })).rejects.toThrow(
      new PaceOptionError('options.callbacks[0]: expected an array of callback objects ({ onEpochEnd, ... })'),
    );
    await expect(trainer.fit(train, { epochs: 1, batchSize: 4, runDir, signal: {} as never })).rejects.toThrow(
      PaceOptionError,
    );
    expect(fs.existsSync(runDir)).toBe(false);
    await expect(trainer.fit(train, { epochs: 1, batchSize: 4, validation: colourDataset(0, 1) })).rejects.toThrow(
      new PaceInputError('options.validation: the dataset is empty'),
    );
    await expect(trainer.fit(train, { epochs: 1, batchSize: 4, runDir })).resolves.toBeDefined(); // then it runs
  });
});

describe('the sets a fit is given', () => {
  test('labels out of range in any set, and evaluation images of another size, are refused before the first step', async () => {
    // Bug: a bad training label failed the step that shuffled it in, after earlier steps had changed the model; a
    // bad validation or test set failed at the first evaluation, evalEvery epochs in; neither named the set.
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    const headWeight = () => {
      const state = model.stateDict();
      const values = JSON.stringify(Array.from(state['head.weight'].toFloat32Array()));
      for (const t of Object.values(state)) t.dispose();
      return values;
    };
    const before = headWeight();
    const train = colourDataset(16, 3);
    const withLabel = (count: number, at: number, label: number) => {
      const values = Array.from({ length: count }, (_, i) => i % tinyVit.numClasses);
      values[at] = label;
      return new TensorDataset(images(count), labels(values));
    };
    const fit = { epochs: 2, batchSize: 4, evalEvery: 2, progress: false as const };
    await expect(trainer.fit(withLabel(16, 13, 9), fit)).rejects.toThrow(
      new PaceInputError('the training set: label 9 at index 13 is not below 4'),
    );
    await expect(trainer.fit(train, { ...fit, validation: withLabel(8, 5, 42) })).rejects.toThrow(
      new PaceInputError('options.validation: label 42 at index 5 is not below 4'),
    );
    await expect(trainer.fit(train, { ...fit, test: withLabel(8, 2, -1) })).rejects.toThrow(
      new PaceInputError('options.test: label -1 at index 2 is negative'),
    );
    const large = new TensorDataset(tensor(new Float32Array(2 * 3 * 24 * 24), [2, 3, 24, 24]), labels([0, 1]));
    await expect(trainer.fit(train, { ...fit, validation: large })).rejects.toThrow(
      new PaceShapeError(
        'options.validation: its float32 images are [2, 3, 24, 24], and the model takes [N, 3, 16, 16] ' +
          '(float images are used as they are: resize them, or give uint8 pixels with a normalization)',
      ),
    );
    expect(headWeight()).toBe(before);
  });
});

describe('arguments', () => {
  test('a path with a NUL byte is refused, not cut there (C would open another file)', async () => {
    // Bug: 'victim.safetensors\0.bak' wrote and read victim.safetensors; Node's own fs refuses such a path.
    const base = path.join(temp.dir, 'victim.safetensors');
    using t = tensor([1, 2, 3]);
    await expect(saveTensors(`${base}\0.bak`, { t })).rejects.toThrow(
      new PaceOptionError('path: must not contain a NUL byte (no file is named so)'),
    );
    using model = await adaptedModel();
    await expect(model.saveWeights(`${base}\0x`)).rejects.toThrow('must not contain a NUL byte');
    await expect(Promise.resolve().then(() => nativeAddon().loadSafetensors(`${base}\0x`))).rejects.toThrow(
      'path must not contain a NUL byte (no file is named so)',
    );
    expect(fs.existsSync(base)).toBe(false);
  });

  test('fit names an argument that is not a dataset or an options object', async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    const fit = { epochs: 1, batchSize: 4 };
    await expect(trainer.fit(null as never, fit)).rejects.toThrow(
      new PaceOptionError('train: expected a TensorDataset, got null'),
    );
    await expect(trainer.fit(colourDataset(8, 1), { ...fit, validation: {} as never })).rejects.toThrow(
      new PaceOptionError('options.validation: expected a TensorDataset, got Object'),
    );
    await expect(trainer.fit(colourDataset(8, 1), null as never)).rejects.toThrow(
      'options: expected an object ({ epochs, batchSize, ... }), got null',
    );
  });

  test('schedules, image helpers and distributed options refuse values their native side cannot count', async () => {
    const schedule = cosineSchedule({ lr: 1e-3, epochs: 100 });
    expect(() => schedule.lrForEpoch(1e20)).toThrow(/^epoch: Too big/);
    expect(() => schedule.lrForEpoch(2.5)).toThrow(/^epoch: /);
    expect(() => schedule.lrForStep(5, -3)).toThrow(/^stepsPerEpoch: Too small/);
    expect(() => schedule.valueAt(-5)).toThrow(/^t: Too small/);
    expect(schedule.lrForEpoch(200)).toBe(1e-5); // past the cosine: minLr
    // Shapes that do not run down from the peak: a low lr met them through the defaults (the reference's), and
    // trained at a rate rising to its end.
    expect(() => cosineSchedule({ lr: 5e-6, epochs: 30, warmupEpochs: 0 })).toThrow(
      'schedule.minLr 1e-05 is above the peak rate lr 5e-06: the cosine would rise',
    );
    expect(() => cosineSchedule({ lr: 1e-3, epochs: 30, warmupEpochs: 2, warmupLr: 0.01 })).toThrow(
      'schedule.warmupLr 0.01 is above the peak rate lr 0.001: the warm-up would fall',
    );
    expect(cosineSchedule({ lr: 1e-3, epochs: 5, warmupEpochs: 4 }).lrForEpoch(5)).toBeCloseTo(
      1e-3 * 0.5 * (1 + Math.cos((Math.PI * 4) / 5)) + 1e-5 * 0.5 * (1 - Math.cos((Math.PI * 4) / 5)),
      15,
    );
    // A union's problem names the field inside it (zod says "Invalid input" of the union)
    using model = await createModel(tinyVit, { seed: 1 });
    model.addAdapters({ rank: 2 });
    const fitWith = (schedule: unknown) =>
      new Trainer(model).fit(colourDataset(16, 1), {
        epochs: 2,
        batchSize: 8,
        progress: false,
        schedule: schedule as never,
      });
    await expect(fitWith({ warmupEpochs: 2.5 })).rejects.toThrow(
      /^options\.schedule\.warmupEpochs: Invalid input: expected int/,
    );
    await expect(fitWith(true)).rejects.toThrow('options.schedule: expected false or an object, got true');
    const normalization = { mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] };
    using empty = tensor(new Uint8Array(0), [2, 0, 8, 3]);
    await expect(prepareImages(empty, { size: 16, ...normalization })).rejects.toThrow(
      new PaceShapeError('images must have at least one pixel; got [2,0,8,3]'),
    );
    using pixels = tensor(new Uint8Array(12), [1, 2, 2, 3]);
    await expect(prepareImages(pixels, { size: 2 ** 31, ...normalization })).rejects.toThrow(
      'size must be a whole number from 1 to 16384',
    );
    await expect(resizedCropImages(pixels, { size: 2 ** 31 })).rejects.toThrow(/^options.size: Too big/);
    await expect(resizedCropImages(pixels, { size: 2, seed: 0.5 })).rejects.toThrow(/^options.seed: /);
    await expect(initDistributed({ backend: 'gloo', rank: 0, worldSize: 1, timeoutSeconds: 1e-4 })).rejects.toThrow(
      /^options.timeoutSeconds: Too small/,
    );
    await expect(initDistributed({ backend: 'gloo', rank: 0, worldSize: 2 ** 31 })).rejects.toThrow(
      /^options.worldSize: Too big/,
    );
  });

  test('images that are not float32, and an empty batch, are refused naming the dtype', async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    using doubles = images(2, 'float64');
    using y = labels([0, 1]);
    await expect(model.forward(doubles)).rejects.toThrow(PaceShapeError);
    await expect(model.forward(doubles)).rejects.toThrow(
      "got float64 [2,3,16,16]: images must be float32 (cast them with .cast('float32'))",
    );
    await expect(trainer.trainStep(doubles, y)).rejects.toThrow('images must be float32');
    using empty = images(0);
    await expect(model.forward(empty)).rejects.toThrow('got float32 [0,3,16,16]: the batch is empty');
  });

  test('a dataset of images that are not float32 is refused where it is made; augmentImages checks its options', async () => {
    using doubles = images(2, 'float64');
    using y = labels([0, 1]);
    expect(() => new TensorDataset(doubles, y)).toThrow(
      new PaceShapeError(
        "images must be float32, as the model's weights are; got float64: convert them with .cast('float32')",
      ),
    );
    using pixels = tensor(new Uint8Array(2 * 8 * 8 * 3), [2, 8, 8, 3]);
    await expect(augmentImages(pixels, { crop: 2.7 })).rejects.toThrow(/^options\.crop: /);
    await expect(augmentImages(pixels, { crop: '4' as never })).rejects.toThrow(PaceOptionError);
    await expect(augmentImages(pixels, undefined as never)).rejects.toThrow(PaceOptionError);
    using none = tensor(new Uint8Array(0), [0, 8, 8, 3]);
    await expect(augmentImages(none, { crop: 4 })).rejects.toThrow(PaceInputError);
    using cropped = await augmentImages(pixels, { crop: 4, flip: true, seed: 1 });
    expect(cropped.shape).toEqual([2, 4, 4, 3]);
  });

  test('a step checks its options, and the fast variant names a bad indices tensor as indices', async () => {
    using model = await adaptedModel();
    const trainer = new Trainer(model, { pace: { variant: 'fast', datasetSize: 10, lambda: 1, sigma: 1 } });
    using x = images(4);
    using y = labels([0, 1, 2, 3]);
    await expect(trainer.trainStep(x, y, null as never)).rejects.toThrow(PaceOptionError);
    await expect(trainer.trainStep(x, y, { diagnostic: true } as never)).rejects.toThrow(/diagnostic/);
    await expect(trainer.trainStep(x, y, { diagnostics: 'yes' as never })).rejects.toThrow(/options\.diagnostics/);
    using outOfRange = labels([0, 1, 2, 12]);
    await expect(trainer.trainStep(x, y, { indices: outOfRange })).rejects.toThrow(
      'indices must lie in [0, 10) (pace.datasetSize); got values from 0 to 12',
    );
    using short = labels([0, 1]);
    await expect(trainer.trainStep(x, y, { indices: short })).rejects.toThrow(
      'indices must be an int64 tensor [4] of sample indices in the training set; got int64 [2]',
    );
  });

  test('a learning rate whose AdamW update no float32 holds is refused naming it, not as a libtorch overflow', async () => {
    // Bug: lr 1e39 (or 3e38, its first update lr / (1 - 0.9) being 3e39) failed inside libtorch with "value cannot
    // be converted to type float without overflow", naming no option.
    using model = await adaptedModel();
    expect(() => new Trainer(model, { optimizer: { lr: 3e38 } })).toThrow(
      new PaceOptionError(
        "optimizer.lr 3e+38 is too large: AdamW's first update moves a parameter by up to optimizer.lr / " +
          '(1 - betas[0]) = 3e+39, past the largest float32 (3.4e38)',
      ),
    );
    expect(() => new Trainer(model, { optimizer: { lr: 1, weightDecay: 1e39 } })).toThrow(
      new PaceOptionError(
        'optimizer.lr × optimizer.weightDecay = 1e+39 is past the largest float32 (3.4e38), which ' +
          "AdamW's decay factor 1 - optimizer.lr × weightDecay must fit",
      ),
    );
    expect(() => new Trainer(model, { optimizer: { eps: 1e39 } })).toThrow(
      new PaceOptionError('optimizer.eps must be > 0 and at most 3.4e38 (the largest float32)'),
    );
    // The largest rate taken steps (its parameters blown up, but no error of libtorch's).
    const trainer = new Trainer(model, { optimizer: { lr: 3e37 } });
    expect(() => trainer.setLearningRate(1e38)).toThrow(/^lr 1e\+38 is too large: .* = 1e\+39, past the largest/);
    using x = images(2);
    using y = labels([0, 1]);
    expect(Number.isFinite((await trainer.trainStep(x, y)).totalLoss)).toBe(true);
  });

  test('a pace.blockStart past the last noise unit is refused instead of turning PACE off', async () => {
    using model = await adaptedModel();
    // tinyVit: blocks 0 and 1, then the head
    expect(new Trainer(model, { pace: { sigma: 1, lambda: 1, blockStart: 2 } }).options.pace.blockStart).toBe(2);
    expect(() => new Trainer(model, { pace: { sigma: 1, lambda: 1, blockStart: 3 } })).toThrow(
      new PaceOptionError(
        "pace.blockStart 3 is past this model's 3 noise units (its blocks, then the head): use 0 to 2",
      ),
    );
  });

  test('devices that are not devices, or not here, are option errors naming the device', async () => {
    using model = await createModel(tinyVit);
    using t = tensor([1, 2, 3]);
    expect(() => t.to('gpu')).toThrow(
      new PaceOptionError("device 'gpu' is not a device: expected 'cpu', 'cuda' or 'cuda:<index>'"),
    );
    expect(() => model.to('gpu')).toThrow(PaceOptionError);
    expect(() => model.to('cuda:64')).toThrow(/device 'cuda:64': /);
    await expect(createModel(tinyVit, { device: 'gpu' })).rejects.toThrow("device 'gpu' is not a device");
  });

  test('createModel and evaluate name a missing spec or dataset; an empty dataset is not evaluated', async () => {
    await expect(createModel(null as never)).rejects.toThrow(
      new PaceOptionError('expected a model name or a spec object, got null'),
    );
    using model = await adaptedModel();
    const trainer = new Trainer(model);
    await expect(trainer.evaluate(null as never)).rejects.toThrow(
      new PaceOptionError('dataset: expected a TensorDataset, got null'),
    );
    await expect(trainer.evaluate(colourDataset(0, 1))).rejects.toThrow(PaceInputError);
  });

  test('tensor() refuses holes, integers its dtype cannot hold and detached buffers, instead of storing others', () => {
    const sparse = [1, 2, 3];
    delete sparse[1];
    expect(() => tensor([sparse, [4, 5, 6]])).toThrow(
      new PaceInputError('data[0][1] is a hole in a sparse array, not a number'),
    );
    expect(() => tensor([2.7], undefined, { dtype: 'int32' })).toThrow('data[0] = 2.7 is not an integer (dtype int32)');
    expect(() => tensor([300], undefined, { dtype: 'uint8' })).toThrow('data[0] = 300 is outside what uint8 holds');
    expect(() => tensor([-1], undefined, { dtype: 'uint8' })).toThrow('outside what uint8 holds');
    expect(() => tensor([40000], undefined, { dtype: 'int16' })).toThrow('outside what int16 holds');
    expect(() => tensor([1e300], undefined, { dtype: 'int64' })).toThrow('outside what int64 holds');
    expect(() => tensor([2 ** 63], undefined, { dtype: 'int64' })).toThrow('outside what int64 holds');
    using edges = tensor([-(2 ** 31), 2 ** 31 - 1], undefined, { dtype: 'int32' });
    expect(Array.from(edges.toInt32Array())).toEqual([-(2 ** 31), 2 ** 31 - 1]);
    const moved = new Float32Array([1, 2]);
    structuredClone(moved.buffer, { transfer: [moved.buffer] });
    expect(() => tensor(moved)).toThrow(
      new PaceInputError('data is a Float32Array whose buffer was detached (transferred away)'),
    );
    expect(() => tensor(moved.buffer)).toThrow(PaceInputError);
    using empty = tensor(new Float32Array(0));
    expect(empty.shape).toEqual([0]);
  });

  test('an unsigned typed array on a libtorch without unsigned dtypes says which libtorch it needs', () => {
    const { torchVersion } = doctor();
    const [major, minor] = torchVersion.split('.').map(Number);
    if (major > 2 || (major === 2 && minor >= 3)) {
      using wide = tensor(new Uint32Array([1, 2]));
      expect(wide.dtype).toBe('uint32');
      return;
    }
    expect(() => tensor(new Uint32Array([1, 2]))).toThrow(
      new PaceUnsupportedError(
        `dtype "uint32" needs libtorch 2.3 or newer; this one is ${torchVersion} (give another dtype, e.g. "int64" for unsigned integers)`,
      ),
    );
    using exact = tensor(new BigUint64Array([2n ** 60n + 1n]), undefined, { dtype: 'int64' });
    expect(Array.from(exact.toBigInt64Array())).toEqual([2n ** 60n + 1n]); // every bit, past 2^53
    expect(() => tensor(new BigUint64Array([2n ** 63n]), undefined, { dtype: 'int64' })).toThrow(
      'outside what int64 holds',
    );
    using converted = tensor(new Uint32Array([1, 2]), undefined, { dtype: 'int64' });
    expect(Array.from(converted.toBigInt64Array())).toEqual([1n, 2n]);
  });
});

test('a worker terminated while native work is in flight ends alone; the process lives on', () => {
  const script = `
    const { Worker } = require('node:worker_threads');
    const source = \`
      const { parentPort, workerData } = require('node:worker_threads');
      const { createModel, tensor } = require(workerData.lib);
      (async () => {
        const model = await createModel({ family: 'vit', imgSize: 64, patchSize: 4, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 });
        const x = tensor(new Float32Array(32 * 3 * 64 * 64), [32, 3, 64, 64]);
        for (;;) {
          const forward = model.forward(x);
          parentPort.postMessage('forward started');
          (await forward).dispose();
        }
      })();
    \`;
    (async () => {
      for (let round = 0; round < 3; round++) {
        const worker = new Worker(source, { eval: true, workerData: { lib: ${JSON.stringify(path.join(repoRoot, 'dist'))} } });
        await new Promise((resolve) => worker.once('message', resolve));
        await worker.terminate();
      }
      console.log('alive');
    })();
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  expect([child.status, child.signal, child.stdout.trim()]).toEqual([0, null, 'alive']);
});

test('new Tensor() and new Model() outside the library are PaceOptionErrors saying how they are made', () => {
  // Bug: new Model() failed with "TypeError: Cannot read properties of undefined (reading 'family')".
  const Construct = (Class: unknown) => () => new (Class as new () => unknown)();
  expect(Construct(Tensor)).toThrow(
    new PaceOptionError('new Tensor(): tensors are made by tensor(), loadTensors() and the model APIs'),
  );
  expect(Construct(Model)).toThrow(new PaceOptionError('new Model(): models are made by createModel()'));
});
