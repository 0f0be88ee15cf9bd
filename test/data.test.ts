import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import { createModel, loadIdxDataset, prepareImages, readIdx, tensor, TensorDataset, Trainer } from '../lib';
import { makeTempDir } from './support/paths';
import { tinyVit } from './support/synthetic';
import { idxBytes } from './support/idx';

const temp = makeTempDir('data');
afterAll(() => temp.cleanup());

describe('prepareImages', () => {
  test('grey pixels become normalised RGB, matching a hand computation', async () => {
    using grey = tensor(new Uint8Array([0, 51, 204, 255]), [1, 2, 2]);
    using out = await prepareImages(grey, { size: 2, mean: [0.5, 0.4, 0.3], std: [0.5, 0.25, 0.2] });
    expect(out.shape).toEqual([1, 3, 2, 2]);
    const expected = [0.5, 0.4, 0.3].flatMap((mean, c) =>
      [0, 51, 204, 255].map((p) => (p / 255 - mean) / [0.5, 0.25, 0.2][c]),
    );
    Array.from(out.toFloat32Array()).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  test('RGBA drops alpha; resizing keeps a flat image flat and gives the model size', async () => {
    using rgba = tensor(new Uint8Array([10, 20, 30, 255, 40, 50, 60, 0]), [1, 1, 2, 4]);
    using out = await prepareImages(rgba, { size: 1, mean: [0, 0, 0], std: [1, 1, 1] });
    expect(out.shape).toEqual([1, 3, 1, 1]);
    using flat = tensor(new Uint8Array(1 * 7 * 5 * 3).fill(128), [1, 7, 5, 3]);
    using resized = await prepareImages(flat, { size: 4, mean: [0, 0, 0], std: [1, 1, 1] });
    expect(resized.shape).toEqual([1, 3, 4, 4]);
    for (const v of resized.toFloat32Array()) expect(v).toBeCloseTo(128 / 255, 6);
  });

  test('other shapes and dtypes are refused', async () => {
    using floats = tensor(new Float32Array(4), [1, 2, 2]);
    await expect(prepareImages(floats, { size: 2, mean: [0, 0, 0], std: [1, 1, 1] })).rejects.toThrow(
      'images must be uint8 [N, H, W] or [N, H, W, C] with C = 1, 3 or 4; got float32 [1,2,2]',
    );
  });
});

describe('IDX files', () => {
  test('plain and gzipped files read back; bad ones are named', () => {
    const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const plain = path.join(temp.dir, 'images-idx3-ubyte');
    fs.writeFileSync(plain, idxBytes([2, 3, 4], data));
    fs.writeFileSync(`${plain}.gz`, zlib.gzipSync(idxBytes([2, 3, 4], data)));
    for (const file of [plain, `${plain}.gz`]) {
      const idx = readIdx(file);
      expect(idx.shape).toEqual([2, 3, 4]);
      expect(Array.from(idx.data)).toEqual(Array.from(data));
    }
    const truncated = path.join(temp.dir, 'truncated');
    fs.writeFileSync(truncated, idxBytes([2, 3, 4], data).subarray(0, 20));
    expect(() => readIdx(truncated)).toThrow(
      `IDX file '${truncated}': dimensions [2,3,4] need 24 bytes of data, the file has 4`,
    );
    const notIdx = path.join(temp.dir, 'not-idx');
    fs.writeFileSync(notIdx, 'hello world');
    expect(() => readIdx(notIdx)).toThrow('bad magic number');
    const badGzip = path.join(temp.dir, 'bad.gz');
    fs.writeFileSync(badGzip, Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    expect(() => readIdx(badGzip)).toThrow('corrupt gzip data');
  });

  test('labels out of range and mismatched counts are refused', () => {
    const images = path.join(temp.dir, 'i');
    const labels = path.join(temp.dir, 'l');
    fs.writeFileSync(images, idxBytes([2, 2, 2], new Uint8Array(8)));
    fs.writeFileSync(labels, idxBytes([2], new Uint8Array([1, 12])));
    const normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    expect(() => loadIdxDataset(images, labels, { normalization, numClasses: 10 })).toThrow(
      'label 12 at index 1 is not below 10',
    );
    fs.writeFileSync(labels, idxBytes([3], new Uint8Array([1, 2, 3])));
    expect(() => loadIdxDataset(images, labels, { normalization })).toThrow('3 labels for 2 images');
  });

  const fashion = '/usr/share/datasets/fashion-mnist';
  (fs.existsSync(fashion) ? test : test.skip)(
    "Debian's Fashion-MNIST test split loads: 10,000 images of 28x28, 10 classes",
    () => {
      const normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
      const dataset = loadIdxDataset(`${fashion}/t10k-images-idx3-ubyte.gz`, `${fashion}/t10k-labels-idx1-ubyte.gz`, {
        normalization,
        numClasses: 10,
      });
      expect(dataset.length).toBe(10000);
      expect(dataset.images.shape).toEqual([10000, 28, 28]);
      const counts = new Array(10).fill(0);
      for (const label of dataset.labels.toBigInt64Array()) counts[Number(label)]++;
      expect(counts).toEqual(new Array(10).fill(1000));
    },
  );
});

test('a uint8 dataset trains and evaluates exactly like its prepared float copy', async () => {
  const count = 64;
  const pixels = Uint8Array.from({ length: count * 20 * 20 * 3 }, (_, i) => (i * 37) % 256);
  const labels = BigInt64Array.from({ length: count }, (_, i) => BigInt(i % 4));
  const normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
  using images = tensor(pixels, [count, 20, 20, 3]);
  using labelTensor = tensor(labels);
  const raw = new TensorDataset(images, labelTensor, { normalization });
  using prepared = await prepareImages(images, { size: 16, ...normalization });
  const floats = new TensorDataset(prepared, labelTensor);
  using model = await createModel(tinyVit, { seed: 1 });
  const trainer = new Trainer(model);
  const a = await trainer.evaluate(raw, { batchSize: 16 });
  const b = await trainer.evaluate(floats, { batchSize: 16 });
  expect(a).toEqual(b);
  expect(() => new TensorDataset(images, labelTensor)).toThrow('uint8 images need options.normalization');
});
