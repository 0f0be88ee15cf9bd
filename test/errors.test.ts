import fs from 'node:fs';
import path from 'node:path';

import {
  createModel,
  loadIdxDataset,
  loadTensorDataset,
  loadTensors,
  ModelSpecSchema,
  PACE_ERROR_CODES,
  PaceBusyError,
  PaceDivergedError,
  PaceError,
  paceError,
  PaceFileError,
  PaceInputError,
  PaceInternalError,
  PaceNetworkError,
  PaceDistributedError,
  PaceWriteError,
  PaceNotFoundError,
  PaceOptionError,
  PaceShapeError,
  PaceStateError,
  PaceUnsupportedError,
  parseSplitList,
  readIdx,
  readRunConfig,
  saveTensors,
  tensor,
  TensorDataset,
  Trainer,
  type Model,
  type PaceErrorCode,
} from '../lib';
import { UsageError } from '../lib/cli/usage';
import { nativeAddon } from '../lib/native';
import { FitLock } from '../lib/models/fit-lock';
import { checkModelFitsInMemory } from '../lib/models/size';
import { makeTempDir } from './support/paths';
import { colourDataset, tinyVit } from './support/synthetic';
import { idxBytes } from './support/idx';

const temp = makeTempDir('errors');
afterAll(() => temp.cleanup());

type PaceErrorClass = abstract new (...args: never[]) => PaceError;

/** Runs `call` (sync or async) and returns what it threw, failing the test when it did not throw. */
async function caught(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

/** `call` throws a `Class` with `code` (and a message matching `message`, when given). */
async function expectPaceError(
  call: () => unknown,
  Class: PaceErrorClass,
  code: PaceErrorCode,
  message?: string | RegExp,
): Promise<PaceError> {
  const error = await caught(call);
  expect(error).toBeInstanceOf(PaceError);
  expect(error).toBeInstanceOf(Error);
  expect(error).toBeInstanceOf(Class);
  expect((error as PaceError).code).toBe(code);
  expect((error as PaceError).name).toBe(Class.name);
  if (message !== undefined) expect((error as PaceError).message).toMatch(message);
  return error as PaceError;
}

describe('paceError() and the codes', () => {
  const classes: Record<PaceErrorCode, PaceErrorClass> = {
    PACE_INVALID_OPTION: PaceOptionError,
    PACE_INVALID_INPUT: PaceInputError,
    PACE_SHAPE_MISMATCH: PaceShapeError,
    PACE_INVALID_FILE: PaceFileError,
    PACE_NOT_FOUND: PaceNotFoundError,
    PACE_INVALID_STATE: PaceStateError,
    PACE_BUSY: PaceBusyError,
    PACE_DIVERGED: PaceDivergedError,
    PACE_UNSUPPORTED: PaceUnsupportedError,
    PACE_NETWORK: PaceNetworkError,
    PACE_DISTRIBUTED: PaceDistributedError,
    PACE_WRITE_FAILED: PaceWriteError,
    PACE_INTERNAL: PaceInternalError,
  };

  test('every code has a class', () => {
    expect([...PACE_ERROR_CODES].sort()).toEqual(Object.keys(classes).sort());
  });

  test.each([...PACE_ERROR_CODES])('paceError(%s) is its class, with its code and the message', (code) => {
    const error = paceError(code, `a ${code} failure`);
    expect(error).toBeInstanceOf(PaceError);
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(classes[code]);
    expect(error.code).toBe(code);
    expect(error.name).toBe(classes[code].name);
    expect(error.message).toBe(`a ${code} failure`);
  });

  test('an unknown code gives a PaceInternalError', () => {
    const error = paceError('PACE_NO_SUCH_CODE', 'what happened');
    expect(error).toBeInstanceOf(PaceInternalError);
    expect(error.code).toBe('PACE_INTERNAL');
    expect(error.message).toBe('what happened');
  });
});

describe('errors without the native core', () => {
  test('a bad option to createModel is a PaceOptionError naming the field', async () => {
    await expectPaceError(
      () => createModel(tinyVit, { seed: -1 }),
      PaceOptionError,
      'PACE_INVALID_OPTION',
      /^options\.seed: /,
    );
    await expectPaceError(
      () => createModel(tinyVit, { noSuchOption: 1 } as never),
      PaceOptionError,
      'PACE_INVALID_OPTION',
    );
  });

  test('an unknown model name is a PaceNotFoundError', async () => {
    await expectPaceError(() => createModel('vit_no_such_model'), PaceNotFoundError, 'PACE_NOT_FOUND', /unknown model/);
  });

  test('a spec larger than the memory is a PaceUnsupportedError', async () => {
    await expectPaceError(
      () => checkModelFitsInMemory(ModelSpecSchema.parse(tinyVit), 1024),
      PaceUnsupportedError,
      'PACE_UNSUPPORTED',
      /more than this machine's/,
    );
  });

  test('a truncated or foreign IDX file is a PaceFileError; a label out of range a PaceInputError', async () => {
    const truncated = path.join(temp.dir, 'truncated-idx');
    fs.writeFileSync(truncated, idxBytes([2, 3, 4], new Uint8Array(10)));
    await expectPaceError(() => readIdx(truncated), PaceFileError, 'PACE_INVALID_FILE', /need 24 bytes/);
    const foreign = path.join(temp.dir, 'foreign-idx');
    fs.writeFileSync(foreign, Buffer.from('PK\u0003\u0004 not an IDX file'));
    await expectPaceError(() => readIdx(foreign), PaceFileError, 'PACE_INVALID_FILE', /bad magic number/);

    const images = path.join(temp.dir, 'images-idx3-ubyte');
    const labels = path.join(temp.dir, 'labels-idx1-ubyte');
    fs.writeFileSync(images, idxBytes([2, 2, 2], new Uint8Array(8)));
    fs.writeFileSync(labels, idxBytes([2], new Uint8Array([1, 7])));
    const normalization = { mean: [0, 0, 0], std: [1, 1, 1] };
    await expectPaceError(
      () => loadIdxDataset(images, labels, { normalization, numClasses: 5 }),
      PaceInputError,
      'PACE_INVALID_INPUT',
      /label 7 at index 1 is not below 5/,
    );
    const short = path.join(temp.dir, 'short-labels-idx1-ubyte');
    fs.writeFileSync(short, idxBytes([1], new Uint8Array([1])));
    await expectPaceError(
      () => loadIdxDataset(images, short, { normalization }),
      PaceShapeError,
      'PACE_SHAPE_MISMATCH',
      /1 labels for 2 images/,
    );
  });

  test('a split list: a label out of range is a PaceInputError, an unreadable line a PaceFileError', async () => {
    const list = path.join(temp.dir, 'split.txt');
    fs.writeFileSync(list, 'a.jpg 0\nb.jpg 3\n');
    await expectPaceError(
      () => parseSplitList(list, { root: temp.dir, numClasses: 3 }),
      PaceInputError,
      'PACE_INVALID_INPUT',
      /label 3 is outside the 3 classes/,
    );
    fs.writeFileSync(list, 'a.jpg 0\nno-label-here\n');
    await expectPaceError(
      () => parseSplitList(list, { root: temp.dir, numClasses: 3 }),
      PaceFileError,
      'PACE_INVALID_FILE',
    );
  });

  test('a run config: missing is a PaceNotFoundError, not JSON a PaceFileError, a bad field a PaceOptionError', async () => {
    const missing = path.join(temp.dir, 'no-such-config.json');
    const error = await expectPaceError(() => readRunConfig(missing), PaceNotFoundError, 'PACE_NOT_FOUND');
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    const broken = path.join(temp.dir, 'broken-config.json');
    fs.writeFileSync(broken, '{ "model": ');
    await expectPaceError(() => readRunConfig(broken), PaceFileError, 'PACE_INVALID_FILE', /^config '/);
    const bad = path.join(temp.dir, 'bad-config.json');
    fs.writeFileSync(bad, JSON.stringify({ noSuchField: 1 }));
    await expectPaceError(() => readRunConfig(bad), PaceOptionError, 'PACE_INVALID_OPTION');
  });

  test("the fit lock refuses a second fit and calls from outside the fit's code with PaceBusyError", async () => {
    const lock = new FitLock();
    let release = () => {};
    const holding = lock.hold(() => new Promise<void>((resolve) => (release = resolve)));
    await expectPaceError(() => lock.hold(async () => {}), PaceBusyError, 'PACE_BUSY', /another fit/);
    await expectPaceError(() => lock.check('model.forward'), PaceBusyError, 'PACE_BUSY', /^model\.forward: /);
    release();
    await holding;
    expect(() => lock.check('model.forward')).not.toThrow();
  });

  test("the CLI's usage errors are PaceOptionErrors", () => {
    const error = new UsageError('--config is required');
    expect(error).toBeInstanceOf(PaceOptionError);
    expect(error.code).toBe('PACE_INVALID_OPTION');
  });
});

describe('errors around native objects', () => {
  let model: Model;
  beforeAll(async () => {
    model = await createModel(tinyVit, { seed: 1 });
    model.addAdapters({ rank: 2 });
  });
  afterAll(() => model.dispose());

  test('tensor(): a bad argument is a PaceOptionError, data that does not fit the shape a PaceShapeError', async () => {
    await expectPaceError(() => tensor('1, 2, 3' as never), PaceOptionError, 'PACE_INVALID_OPTION');
    await expectPaceError(() => tensor(new Float32Array(4), [2, -2]), PaceOptionError, 'PACE_INVALID_OPTION');
    await expectPaceError(() => tensor(new Float32Array(6), [4]), PaceShapeError, 'PACE_SHAPE_MISMATCH');
    await expectPaceError(() => tensor([[1, 2], [3]]), PaceShapeError, 'PACE_SHAPE_MISMATCH', /ragged/);
    await expectPaceError(() => tensor([1.5], [1], { dtype: 'int64' }), PaceInputError, 'PACE_INVALID_INPUT');
    await expectPaceError(
      () => tensor([1], [1], { dtype: 'no-such-dtype' } as never),
      PaceOptionError,
      'PACE_INVALID_OPTION',
      /^options\.dtype: /,
    );
  });

  test('a tensor used after dispose is a PaceStateError', async () => {
    const t = tensor(new Float32Array([1, 2]));
    t.dispose();
    await expectPaceError(
      () => saveTensors(path.join(temp.dir, 'disposed.safetensors'), { t }),
      PaceStateError,
      'PACE_INVALID_STATE',
      "tensors['t'] was disposed",
    );
  });

  test("the native core's errors are PaceErrors too: a disposed tensor, a truncated or missing safetensors file", async () => {
    const t = tensor(new Float32Array([1, 2]));
    t.dispose();
    await expectPaceError(() => t.toFloat32Array(), PaceStateError, 'PACE_INVALID_STATE', /disposed/);
    const truncated = path.join(temp.dir, 'truncated.safetensors');
    fs.writeFileSync(truncated, Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 123]));
    await expectPaceError(() => loadTensors(truncated), PaceFileError, 'PACE_INVALID_FILE', /truncated/);
    await expectPaceError(
      () => loadTensors(path.join(temp.dir, 'no-such.safetensors')),
      PaceNotFoundError,
      'PACE_NOT_FOUND',
    );
  });

  test('a TensorDataset of mismatched lengths or a wrong label tensor is a PaceShapeError', async () => {
    using images = tensor(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    using three = tensor(new BigInt64Array(3));
    using floatLabels = tensor(new Float32Array(2));
    using pixels = tensor(new Uint8Array(2 * 4 * 4 * 3), [2, 4, 4, 3]);
    using two = tensor(new BigInt64Array(2));
    await expectPaceError(
      () => new TensorDataset(images, three),
      PaceShapeError,
      'PACE_SHAPE_MISMATCH',
      'the dataset has 2 images but 3 labels',
    );
    await expectPaceError(() => new TensorDataset(images, floatLabels), PaceShapeError, 'PACE_SHAPE_MISMATCH');
    await expectPaceError(() => new TensorDataset(pixels, two), PaceOptionError, 'PACE_INVALID_OPTION');
  });

  test('a dataset file keeps the class of what is wrong with it, naming the file', async () => {
    const noLabels = path.join(temp.dir, 'no-labels.safetensors');
    {
      using images = tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16]);
      await saveTensors(noLabels, { images });
    }
    await expectPaceError(() => loadTensorDataset(noLabels), PaceFileError, 'PACE_INVALID_FILE', /needs tensors/);
    const mismatched = path.join(temp.dir, 'mismatched.safetensors');
    {
      using images = tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16]);
      using labels = tensor(new BigInt64Array(2));
      await saveTensors(mismatched, { images, labels });
    }
    const error = await expectPaceError(
      () => loadTensorDataset(mismatched),
      PaceShapeError,
      'PACE_SHAPE_MISMATCH',
      `dataset file '${mismatched}': the dataset has 1 images but 2 labels`,
    );
    expect(error.cause).toBeInstanceOf(PaceShapeError);
  });

  test("the core's own rules reach JavaScript with their codes: shapes, targets, option names, a diverged loss", async () => {
    using wrongSize = tensor(new Float32Array(1 * 3 * 8 * 8), [1, 3, 8, 8]);
    await expectPaceError(
      () => model.forward(wrongSize),
      PaceShapeError,
      'PACE_SHAPE_MISMATCH',
      /\[batch, 3, 16, 16\]/,
    );

    const trainer = new Trainer(model);
    using images = tensor(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    using outOfRange = tensor([0, 7], [2], { dtype: 'int64' });
    await expectPaceError(
      () => trainer.trainStep(images, outOfRange),
      PaceInputError,
      'PACE_INVALID_INPUT',
      /targets must lie in \[0, 4\); got values from 0 to 7/,
    );

    // A second set of adapters is refused by the core itself, not only by Model.addAdapters.
    await expectPaceError(
      () => model.nativeHandle.addAdapters('loramul', 2, []),
      PaceStateError,
      'PACE_INVALID_STATE',
      'the model already has adapters',
    );

    // The core owns the option names: a name TypeScript's schema would stop is refused there too, listing them.
    const { NativeTrainer } = nativeAddon();
    const optimizer = { lr: 1e-3, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, clipGradNorm: 0 };
    await expectPaceError(
      () => new NativeTrainer(model.nativeHandle, optimizer, { noise: 'gaussian' }, 0),
      PaceOptionError,
      'PACE_INVALID_OPTION',
      "pace.noise must be one of 'multiplicative', 'additive', 'dropout'; got 'gaussian'",
    );
    await expectPaceError(
      () => new NativeTrainer(model.nativeHandle, optimizer, { variant: 'slow' }, 0),
      PaceOptionError,
      'PACE_INVALID_OPTION',
      /pace\.variant must be one of 'pace', 'lazy', 'fast', 'fpa', 'noise'; got 'slow'/,
    );

    // A NaN loss stops the fit (on a model of its own, so the shared one keeps its state for the next tests).
    using diverging = await createModel(tinyVit, { seed: 3 });
    diverging.addAdapters({ rank: 2 });
    using nan = tensor(new Float32Array(8 * 3 * 16 * 16).fill(Number.NaN), [8, 3, 16, 16]);
    using labels = tensor([0, 1, 2, 3, 0, 1, 2, 3], [8], { dtype: 'int64' });
    // Images that are not finite are named before the first step, not found as a loss later.
    const someBad = new Float32Array(8 * 3 * 16 * 16).fill(0.5);
    someBad[5 * 3 * 16 * 16 + 100] = Number.NaN;
    someBad[6 * 3 * 16 * 16 + 7] = Number.NEGATIVE_INFINITY;
    using notFinite = tensor(someBad, [8, 3, 16, 16]);
    const fitOnce = { epochs: 1, batchSize: 4, schedule: false, progress: false } as const;
    await expectPaceError(
      () => new Trainer(diverging).fit(new TensorDataset(notFinite, labels), fitOnce),
      PaceInputError,
      'PACE_INVALID_INPUT',
      "the dataset's images hold NaN or infinite values: sample 5 and 1 more (float images must be finite)",
    );
    // Finite images too large for float32 arithmetic: the loss is not finite though every pixel is.
    using overflowing = tensor(new Float32Array(8 * 3 * 16 * 16).fill(3e38), [8, 3, 16, 16]);
    await expectPaceError(
      () =>
        new Trainer(diverging).fit(new TensorDataset(overflowing, labels), {
          epochs: 1,
          batchSize: 4,
          schedule: false,
          progress: false,
        }),
      PaceDivergedError,
      'PACE_DIVERGED',
      // before any update the learning rate played no part (it said to lower it)
      /^the loss became nan at epoch 0, step 0 \(before any update: check the data, pace\.sigma and pace\.lambda\); /,
    );
    // After an update: the learning rate may have done it.
    using finite = tensor(new Float32Array(8 * 3 * 16 * 16).fill(0.5), [8, 3, 16, 16]);
    const stepping = new Trainer(diverging);
    await stepping.trainStep(finite, labels);
    await expectPaceError(
      () => stepping.trainStep(nan, labels),
      PaceDivergedError,
      'PACE_DIVERGED',
      /^the loss became nan \(lower the learning rate or check the data\); the parameters are as before this step$/,
    );
  });

  test('a bad Trainer option is a PaceOptionError naming the field', async () => {
    await expectPaceError(
      () => new Trainer(model, { optimizer: { lr: -1 } }),
      PaceOptionError,
      'PACE_INVALID_OPTION',
      /^options\.optimizer\.lr: /,
    );
  });

  test('adapters in the wrong order are a PaceStateError', async () => {
    using fresh = await createModel(tinyVit, { seed: 2 });
    await expectPaceError(
      () => fresh.loadAdapters(path.join(temp.dir, 'adapters.safetensors')),
      PaceStateError,
      'PACE_INVALID_STATE',
    );
    await expectPaceError(
      () => fresh.saveAdapters(path.join(temp.dir, 'x.safetensors')),
      PaceStateError,
      'PACE_INVALID_STATE',
    );
    fresh.addAdapters({ rank: 2 });
    await expectPaceError(() => fresh.addAdapters({ rank: 2 }), PaceStateError, 'PACE_INVALID_STATE');
  });

  test('fit: fewer samples than one batch is a PaceInputError; a missing resume folder a PaceNotFoundError', async () => {
    const trainer = new Trainer(model);
    const small = colourDataset(4, 1);
    await expectPaceError(
      () => trainer.fit(small, { epochs: 1, batchSize: 8, progress: false }),
      PaceInputError,
      'PACE_INVALID_INPUT',
      /fewer than one batch/,
    );
    await expectPaceError(
      () => trainer.fit(small, { epochs: 1, batchSize: 2, progress: false, resume: path.join(temp.dir, 'no-run') }),
      PaceNotFoundError,
      'PACE_NOT_FOUND',
      /does not exist/,
    );
  });

  test('a running fit makes the model and its trainer busy (PaceBusyError)', async () => {
    const trainer = new Trainer(model);
    const train = colourDataset(16, 1);
    const running = trainer.fit(train, { epochs: 1, batchSize: 8, schedule: false, progress: false });
    try {
      await expectPaceError(() => model.trainableParameters(), PaceBusyError, 'PACE_BUSY', /model is busy/);
      await expectPaceError(
        () => trainer.fit(train, { epochs: 1, batchSize: 8, progress: false }),
        PaceBusyError,
        'PACE_BUSY',
        /already running a fit/,
      );
    } finally {
      await running;
    }
    expect(model.trainableParameters().length).toBeGreaterThan(0);
  });
});
