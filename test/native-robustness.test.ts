import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  createModel,
  destroyDistributed,
  PaceDistributedError,
  initDistributed,
  PaceShapeError,
  PaceStateError,
  PaceUnsupportedError,
  prepareImages,
  readTensorHeader,
  saveTensors,
  tensor,
  Trainer,
} from '../lib';
import { freePort } from './support/ports';
import { tinyVit } from './support/synthetic';
import { testIf } from './support/test-if';

const repo = path.resolve(__dirname, '..');

/** Runs a script against the built package (dist/) in its own process: a crash or a hang there fails one test. */
function runChild(script: string, timeoutMs = 60_000) {
  const result = spawnSync(process.execPath, ['-e', script], {
    cwd: repo,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, UV_THREADPOOL_SIZE: '4' },
  });
  return { status: result.status, signal: result.signal, output: `${result.stdout}${result.stderr}` };
}

describe('the addon against its own callers', () => {
  // A getter on a later piece can detach or grow an earlier piece's buffer after its length was read; the copy
  // used to trust the first reading (a detached buffer: a null read, SIGSEGV; a grown one: a write past the end).
  test.each([
    ['detached', 'structuredClone(ab, { transfer: [ab] })', 'hold 0 bytes but shape [64] of uint8 needs 64'],
    ['grown', 'ab.resize(1 << 20)', 'hold 1048576 bytes but shape [64] of uint8 needs 64'],
  ])('tensor pieces whose buffer is %s while the pieces are read are refused', (_kind, change, message) => {
    const child = runChild(`
      const { nativeAddon } = require('./dist/native');
      const ab = new ArrayBuffer(64, { maxByteLength: 1 << 20 });
      const pieces = [new Uint8Array(ab)];
      Object.defineProperty(pieces, 1, { enumerable: true, get() { ${change}; return new Uint8Array(0); } });
      try { nativeAddon().createTensorFromPieces(pieces, 'uint8', [64]); console.log('made'); }
      catch (error) { console.log(error.code, error.message); }
    `);
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.output).toContain(`PACE_SHAPE_MISMATCH the pieces ${message}`);
  });

  // Accessors carry no V8 signature and InstanceOf follows a prototype JavaScript can swap: another class's object
  // was cast to the accessor's class, or passed as a tensor argument (SIGSEGV, an abort, or garbage numbers).
  test("another wrapped class's object as an accessor's receiver or a tensor argument is refused, not read", () => {
    const child = runChild(`
      const { createModel, Trainer } = require('./dist');
      const { nativeAddon } = require('./dist/native');
      (async () => {
        const spec = ${JSON.stringify(tinyVit)};
        const model = await createModel(spec);
        const handle = model.nativeHandle;
        const tensorHandle = handle.stateDict().tensors[0];
        const flag = new (nativeAddon().NativeStopFlag)();
        const trainerHandle = new (nativeAddon().NativeTrainer)(handle, {}, {}, 0);
        const getter = (of, name) => Object.getOwnPropertyDescriptor(Object.getPrototypeOf(of), name).get;
        const cases = [
          [handle, 'device', tensorHandle], [tensorHandle, 'device', handle], [tensorHandle, 'shape', flag],
          [tensorHandle, 'numel', trainerHandle], [handle, 'training', flag], [flag, 'stopped', tensorHandle],
          [trainerHandle, 'iteration', handle],
        ];
        for (const [of, name, receiver] of cases) {
          try { console.log(name, 'read:', getter(of, name).call(receiver)); }
          catch (error) { console.log(name, error.constructor.name, error.message); }
        }
        const disguised = (await createModel(spec)).nativeHandle;
        Object.setPrototypeOf(disguised, Object.getPrototypeOf(tensorHandle));
        try { await handle.forward(disguised); console.log('forward ran'); }
        catch (error) { console.log('forward', error.code, error.message); }
      })();
    `);
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    const lines = child.output.trim().split('\n');
    expect(lines).toEqual([
      'device TypeError Illegal invocation: the receiver is not a NativeModel',
      'device TypeError Illegal invocation: the receiver is not a NativeTensor',
      'shape TypeError Illegal invocation: the receiver is not a NativeTensor',
      'numel TypeError Illegal invocation: the receiver is not a NativeTensor',
      'training TypeError Illegal invocation: the receiver is not a NativeModel',
      'stopped TypeError Illegal invocation: the receiver is not a NativeStopFlag',
      'iteration TypeError Illegal invocation: the receiver is not a NativeTrainer',
      'forward PACE_INVALID_OPTION images is not a Tensor',
    ]);
  });

  // runEpoch checked that the trainer was live before reading its options, then used the handle's model: a getter
  // that disposed the trainer left a null pointer (SIGSEGV); setLearningRate locked the model before its number's
  // valueOf ran, which could free the lock it held.
  test('option getters and valueOf that dispose the trainer mid-call are refused, not a crash', () => {
    const child = runChild(`
      const { createModel, tensor } = require('./dist');
      const { handleOf } = require('./dist/tensor');
      const { nativeAddon } = require('./dist/native');
      (async () => {
        const model = await createModel(${JSON.stringify(tinyVit)}, { seed: 1 });
        model.addAdapters({ rank: 2 });
        const images = tensor(new Float32Array(8 * 3 * 16 * 16), [8, 3, 16, 16]);
        const labels = tensor(new BigInt64Array(8));
        const make = () => new (nativeAddon().NativeTrainer)(model.nativeHandle, { lr: 1e-3 }, {}, 0);
        const epochTrainer = make();
        const options = { get batchSize() { epochTrainer.dispose(); return 4; } };
        try { await epochTrainer.runEpoch(handleOf(images), handleOf(labels), options); console.log('epoch ran'); }
        catch (error) { console.log('runEpoch', error.code, error.message); }
        // (the stop flag is read with the other options, before the trainer is found live)
        const stopTrainer = make();
        const stopOptions = { batchSize: 4, get stopRequested() { stopTrainer.dispose(); return false; } };
        try { await stopTrainer.runEpoch(handleOf(images), handleOf(labels), stopOptions); console.log('epoch ran'); }
        catch (error) { console.log('runEpoch', error.code, error.message); }
        const rateTrainer = make();
        try { rateTrainer.setLearningRate({ valueOf() { rateTrainer.dispose(); return 1e-3; } }); console.log('rate set'); }
        catch (error) { console.log('setLearningRate', error.code, error.message); }
      })();
    `);
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.output.trim().split('\n')).toEqual([
      'runEpoch PACE_INVALID_STATE Trainer was disposed; it cannot be used any more',
      'runEpoch PACE_INVALID_STATE Trainer was disposed; it cannot be used any more',
      'setLearningRate PACE_INVALID_STATE Trainer was disposed; it cannot be used any more',
    ]);
  });

  // Tensor reads copied libtorch's converted tensor into an ArrayBuffer V8 made for the addon, which ends the process
  // when that allocation fails (a fatal "invalid array buffer length", not an exception); a read is now written by
  // libtorch straight into a typed array JavaScript allocated, so it needs one allocation, whose failure is an
  // error. Under an address-space limit that the 2 GiB conversion of a 500 MiB tensor fits once but not twice, it
  // now succeeds; it aborted before. Under one it does not fit at all, it is refused, not an abort.
  test('a tensor read under an address-space limit needs one allocation, not two, and does not abort', () => {
    const bytes = 500 * 2 ** 20;
    const script = `
      const { tensor } = require('./dist');
      let big;
      try { big = tensor(Buffer.alloc(${bytes}, 1), [${bytes}], { dtype: 'uint8' }); }
      catch (error) { console.log('refused', error.code); process.exit(0); } // (a tight limit: not even the input)
      try { const floats = big.toFloat32Array(); console.log('converted', floats.length, floats[${bytes - 1}]); }
      catch (error) { console.log('refused', error.code); }
    `;
    const underLimit = (kib: number) =>
      spawnSync('bash', ['-c', `ulimit -v ${kib} && exec "$0" -e "$1"`, process.execPath, script], {
        cwd: repo,
        encoding: 'utf8',
        timeout: 60_000,
      });
    const result = underLimit(5_900_000);
    expect(result.signal).toBeNull();
    expect(`${result.stdout}${result.stderr}`.trim()).toBe(`converted ${bytes} 1`);
    const tight = underLimit(3_400_000); // (refused here; a runtime needing less address space may convert)
    expect(tight.signal).toBeNull();
    expect(`${tight.stdout}${tight.stderr}`.trim()).toMatch(new RegExp(`^(converted ${bytes} 1|refused \\S+)$`));
  });

  // Node lets a terminated worker's environment go only once its queued native work has ended, and each job that
  // ended started the next waiting one: terminate() ran every queued forward (or epoch) for nobody to see.
  test("a terminated worker's jobs still waiting their turn are dropped, not run", () => {
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const worker = new Worker(\`
        const { parentPort } = require('node:worker_threads');
        const { createModel, tensor } = require(\${JSON.stringify(require('node:path').resolve('dist'))});
        (async () => {
          const model = await createModel('vit_small_patch16_224', { numClasses: 10, seed: 1 });
          const images = tensor(new Float32Array(8 * 3 * 224 * 224), [8, 3, 224, 224]);
          await model.forward(images);
          const start = Date.now();
          await model.forward(images);
          const one = Date.now() - start;
          for (let i = 0; i < 8; i++) model.forward(images).catch(() => {});
          parentPort.postMessage(one);
        })();
      \`, { eval: true });
      worker.on('message', async (one) => {
        const start = Date.now();
        await worker.terminate();
        console.log(JSON.stringify({ one, terminate: Date.now() - start }));
      });
    `);
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    const { one, terminate } = JSON.parse(child.output.trim()) as { one: number; terminate: number };
    // The running forward finishes; the eight waiting would take eight times as long.
    expect(terminate).toBeLessThan(4 * one);
  });

  // A trainer whose model was disposed between epochs refused the epoch after creating its progress callback,
  // which then was never released: Node never exited.
  test('a fit whose model is disposed in a callback fails and lets the process exit', () => {
    const child = runChild(`
      const { createModel, Trainer, tensor, TensorDataset } = require('./dist');
      (async () => {
        const model = await createModel(${JSON.stringify(tinyVit)}, { seed: 1 });
        model.addAdapters({ type: 'loramul_vptadd', rank: 2 });
        const trainer = new Trainer(model, { optimizer: { lr: 1e-3 } });
        const data = new TensorDataset(tensor(new Float32Array(8 * 3 * 16 * 16), [8, 3, 16, 16]),
          tensor(new BigInt64Array(8)));
        try {
          await trainer.fit(data, { epochs: 3, batchSize: 4, callbacks: [{ onEpochBegin: (epoch) => {
            if (epoch === 1) model.dispose();
          } }] });
          console.log('fit finished');
        } catch (error) { console.log('fit failed:', error.code); }
      })();
    `);
    expect(child.signal).toBeNull(); // not killed by the timeout
    expect(child.status).toBe(0);
    expect(child.output).toContain('fit failed: PACE_INVALID_STATE');
  });
});

describe("one model's native work", () => {
  // Bug: loadAdapters and saveAdapters read the file's header or the weights' fingerprint asynchronously before
  // queueing their job, so a forward asked after a load ran first (on the old adapters), and a step asked after a
  // save ran before it (the file held the stepped adapters).
  test('runs in the order it was asked for: adapter loads and saves before the forwards and steps asked after them', async () => {
    using model = await createModel(tinyVit, { seed: 5 });
    model.addAdapters({ rank: 2 });
    using other = await createModel(tinyVit, { seed: 6 });
    other.addAdapters({ rank: 2 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-order-'));
    try {
      // Also after a loadWeights: its settled fingerprint must not send later calls the slow way round.
      const weights = path.join(dir, 'weights.safetensors');
      using otherBackbone = await createModel(tinyVit, { seed: 6 }); // (weights saved with adapters are refused)
      await otherBackbone.saveWeights(weights);
      await model.loadWeights(weights);
      other.classNames = ['a', 'b', 'c', 'd'];
      const otherFile = path.join(dir, 'other.safetensors');
      await other.saveAdapters(otherFile);
      using input = tensor(
        new Float32Array(2 * 3 * 16 * 16).map((_, i) => Math.sin(i)),
        [2, 3, 16, 16],
      );
      const loading = model.loadAdapters(otherFile, { allowOtherWeights: true });
      const namesSaved = path.join(dir, 'names.safetensors');
      const savingNames = model.saveAdapters(namesSaved); // asked after the load: it records the loaded names
      using afterLoad = await model.forward(input);
      await Promise.all([loading, savingNames]);
      const recorded = (await readTensorHeader(namesSaved)).metadata?.['pace_peft.adapters'] ?? '{}';
      expect(JSON.parse(recorded).classNames).toEqual(['a', 'b', 'c', 'd']);
      using settled = await model.forward(input);
      expect(Array.from(afterLoad.toFloat32Array())).toEqual(Array.from(settled.toFloat32Array()));

      const trainer = new Trainer(model, { optimizer: { lr: 0.1 }, seed: 1 });
      const before = path.join(dir, 'before.safetensors');
      await model.saveAdapters(before);
      const saved = path.join(dir, 'saved.safetensors');
      const saving = model.saveAdapters(saved);
      const step = trainer.trainStep(input, tensor(new BigInt64Array([1n, 2n])));
      await Promise.all([saving, step]);
      expect(fs.readFileSync(saved).equals(fs.readFileSync(before))).toBe(true);
      trainer.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // Jobs on one model used to wait for its mutex on libuv's worker threads, which fs, sharp and zlib share: six
  // forwards held all four, and a stat() waited for three of them.
  test('waits its turn without holding libuv threads that file and image work need', async () => {
    const model = await createModel({ ...tinyVit, imgSize: 64, embedDim: 128, depth: 4, numHeads: 4 }, { seed: 1 });
    const images = tensor(new Float32Array(128 * 3 * 64 * 64), [128, 3, 64, 64]);
    try {
      const forwards = Array.from({ length: 6 }, () => model.forward(images));
      let forwardsDone = 0;
      for (const forward of forwards) void forward.then(() => (forwardsDone += 1));
      await fs.promises.stat(os.tmpdir());
      expect(forwardsDone).toBe(0);
      const outputs = await Promise.all(forwards);
      expect(forwardsDone).toBe(6);
      // In the order they were asked for, each the same.
      const first = outputs[0].toArray() as number[][];
      for (const output of outputs.slice(1)) expect(output.toArray()).toEqual(first);
      for (const output of outputs) output.dispose();
    } finally {
      images.dispose();
      model.dispose();
    }
  });

  // A job waiting its turn holds no mutex: a synchronous call that changes the model could run between two jobs,
  // and the second then ran on a model other than the one it was asked of.
  test('synchronous calls that change the model are refused while a job of it waits', async () => {
    const model = await createModel(tinyVit, { seed: 1 });
    const images = tensor(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    try {
      const first = model.forward(images);
      const second = model.forward(images);
      (await first).dispose();
      expect(() => model.train(true)).toThrow(/the model is busy/);
      (await second).dispose();
      expect(() => model.train(true)).not.toThrow();
      expect(model.training).toBe(true);
    } finally {
      images.dispose();
      model.dispose();
    }
  });

  // A step is checked when it is asked for; the model's adapters could still change before it ran (libuv's
  // threads busy), and the step then trained with an optimizer that did not hold them. Now the model is busy from
  // the moment a job is asked for, not only while one runs.
  test('adapters cannot be added while a step waits for a libuv thread', async () => {
    const model = await createModel(tinyVit, { seed: 1 });
    const trainer = new Trainer(model, { optimizer: { lr: 1e-3 } });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-fifo-'));
    const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const fifos = Array.from({ length: poolSize }, (_, i) => path.join(dir, `fifo${i}`));
    for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
    // Opening a FIFO blocks its libuv thread until a writer comes: every thread is busy, using no CPU.
    const blocked = fifos.map((fifo) => fs.promises.readFile(fifo));
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      for (const fifo of fifos) fs.writeFileSync(fifo, 'x');
      await Promise.all(blocked);
    };
    try {
      // Every thread taken: a probe queued behind them waits (else the refusal below proves nothing).
      let probed = false;
      const probe = fs.promises.stat(dir).then(() => (probed = true));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(probed).toBe(false);
      const images = tensor(new Float32Array(4 * 3 * 16 * 16), [4, 3, 16, 16]);
      const step = trainer.trainStep(images, tensor(new BigInt64Array([0n, 1n, 2n, 3n])));
      expect(() => model.addAdapters({ type: 'loramul_vptadd', rank: 2 })).toThrow(/the model is busy/);
      await release();
      await probe;
      expect(Number.isFinite((await step).totalLoss)).toBe(true);
      expect(model.addAdapters({ type: 'loramul_vptadd', rank: 2 }).length).toBeGreaterThan(2);
      await expect(trainer.trainStep(images, tensor(new BigInt64Array([0n, 1n, 2n, 3n])))).rejects.toThrow(
        PaceStateError,
      );
    } finally {
      await release(); // threads left blocked would hang every later test
      fs.rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });
});

describe('limits named for what they are', () => {
  // With overcommit always on, malloc grants any size and the pages fail later: nothing to check there.
  const overcommitAlways = fs.readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim() === '1';
  testIf(!overcommitAlways, 'vm.overcommit_memory is 1: malloc grants any size')(
    'an allocation larger than the machine is PACE_UNSUPPORTED naming its size, not std::bad_alloc',
    async () => {
      // 4,096 images at the largest size (16,384²): 12 TiB of output, as one image at 2^20² was before sizes had a cap.
      const pixels = tensor(new Uint8Array(4096 * 8 * 8 * 3), [4096, 8, 8, 3]);
      const asked = prepareImages(pixels, { size: 16384, mean: [0, 0, 0], std: [1, 1, 1] });
      await expect(asked).rejects.toThrow(PaceUnsupportedError);
      await expect(asked).rejects.toThrow(/^out of host memory: 12288\.0 GiB \(13194139533312 bytes\)/);
    },
  );

  test('a checkpoint pos_embed without grid tokens is a shape mismatch naming the file', async () => {
    const model = await createModel(tinyVit, { seed: 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-pos-'));
    const file = path.join(dir, 'one-position.safetensors');
    try {
      await saveTensors(file, { pos_embed: tensor(new Float32Array(32), [1, 1, 32]) });
      const loading = model.loadWeights(file, { strict: false });
      await expect(loading).rejects.toThrow(PaceShapeError);
      await expect(loading).rejects.toThrow(/pos_embed: the checkpoint has 1 position\(s\), no grid tokens/);
      await expect(loading).rejects.toThrow(file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  test('a second group cannot be joined while the first is connecting', async () => {
    const port = await freePort();
    // Rank 0 of two, whose peer never comes: it stays connecting until its timeout.
    const options = { rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutSeconds: 3 };
    const join = () => {
      const started = Date.now();
      return initDistributed({ ...options, backend: 'gloo' }).then(
        () => 'joined',
        (error: Error) => (error instanceof PaceStateError ? { error, after: Date.now() - started } : error),
      );
    };
    const first = join();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = join();
    // Whichever of the two worker threads started first connects; the other is refused at once, not after a
    // connection attempt of its own (which would fail on the port after the timeout).
    const outcomes = [await first, await second];
    destroyDistributed();
    const refused = outcomes.filter(
      (outcome) => typeof outcome === 'object' && 'after' in outcome && outcome.error instanceof PaceStateError,
    ) as { error: Error; after: number }[];
    expect(refused).toHaveLength(1);
    expect(refused[0].error.message).toBe('this process is already joining a distributed group; await that first');
    expect(refused[0].after).toBeLessThan(2000);
    const timedOut = outcomes.filter((outcome) => outcome instanceof PaceDistributedError);
    expect(timedOut).toHaveLength(1);
  });
});
