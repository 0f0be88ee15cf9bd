import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { folderClassNames, loadDatasetSource, saveTensors, tensor, type DatasetSource } from '../lib';
import { idxBytes } from './support/idx';
import { makeTempDir } from './support/paths';

// loadDatasetSource, as pace fit and pace eval call it with the model's class count and preprocessing.

const temp = makeTempDir('sources');
afterAll(() => temp.cleanup());
const preprocessing = {
  mean: [0.5, 0.5, 0.5] as [number, number, number],
  std: [0.25, 0.25, 0.25] as [number, number, number],
  interpolation: 'bicubic' as const,
  cropPct: 0.9,
  imgSize: 8,
};
const load = (
  source: DatasetSource,
  options: { numClasses?: number; cacheDir?: string; classNames?: readonly string[] } = {},
) => loadDatasetSource(source, { preprocessing, baseDir: temp.dir, ...options });

async function writePng(file: string, colour: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 6, height: 6, channels: 3, background: colour } })
    .png()
    .toFile(file);
}

describe("labels are checked against the model's classes at load, naming the source", () => {
  test('IDX: the first label not below the class count, with its index', async () => {
    const labels = Array.from({ length: 64 }, (_, i) => (i === 37 ? 9 : i % 4));
    fs.writeFileSync(path.join(temp.dir, 'images-idx3-ubyte'), idxBytes([64, 4, 4], new Uint8Array(64 * 16)));
    fs.writeFileSync(path.join(temp.dir, 'labels-idx1-ubyte'), idxBytes([64], Uint8Array.from(labels)));
    const source = { idx: ['images-idx3-ubyte', 'labels-idx1-ubyte'] as [string, string] };
    await expect(load(source, { numClasses: 4 })).rejects.toThrow(
      expect.objectContaining({
        name: 'PaceInputError',
        message: `IDX file '${path.join(temp.dir, 'labels-idx1-ubyte')}': label 9 at index 37 is not below 4`,
      }),
    );
    expect((await load(source, { numClasses: 10 })).length).toBe(64);
  });

  test('an image folder with more classes than the model', async () => {
    for (const name of ['a', 'b', 'c']) await writePng(path.join(temp.dir, 'three', name, '1.png'), 'red');
    await expect(load({ folder: 'three' }, { numClasses: 2 })).rejects.toThrow(
      expect.objectContaining({
        name: 'PaceInputError',
        message: "image folder 'three' has 3 classes, more than the model's 2",
      }),
    );
  });

  test("held-out image folders are labelled by the training folder's class names", async () => {
    // Bug: each folder was labelled by its own subfolders: a validation folder without 'dog' gave 'fox' label 1,
    // which is 'dog' in training, and its accuracy was measured against the wrong labels without an error.
    for (const name of ['cat', 'dog', 'fox']) await writePng(path.join(temp.dir, 'split-train', name, '1.png'), 'red');
    for (const name of ['cat', 'fox']) await writePng(path.join(temp.dir, 'split-val', name, '1.png'), 'red');
    await writePng(path.join(temp.dir, 'split-odd', 'wolf', '1.png'), 'red');
    const classNames = folderClassNames({ folder: 'split-train' }, temp.dir);
    expect(classNames).toEqual(['cat', 'dog', 'fox']);
    expect(folderClassNames('train.safetensors', temp.dir)).toBeUndefined();
    const validation = await load({ folder: 'split-val' }, { classNames });
    expect(validation.labels.toBigInt64Array()).toEqual(BigInt64Array.from([0n, 2n]));
    await expect(load({ folder: 'split-odd' }, { classNames })).rejects.toThrow(
      `image folder '${path.join(temp.dir, 'split-odd')}': class folder 'wolf' is not one of the training folder's 3 classes (cat, dog, fox)`,
    );
  });

  test("a split list whose numClasses is larger than the model's", async () => {
    await writePng(path.join(temp.dir, 'list-root', 'x.png'), 'red');
    fs.writeFileSync(path.join(temp.dir, 'list.txt'), 'x.png 1\n');
    const source = { list: 'list.txt', root: 'list-root', numClasses: 10 };
    await expect(load(source, { numClasses: 4 })).rejects.toThrow(
      expect.objectContaining({
        name: 'PaceOptionError',
        message: "split list 'list.txt': numClasses 10 is more than the model's 4",
      }),
    );
    expect((await load({ ...source, numClasses: 4 }, { numClasses: 4 })).length).toBe(1);
  });

  test('a benchmark with more classes than the model', async () => {
    const dir = path.join(temp.dir, 'fgvc', 'CUB_200_2011');
    fs.mkdirSync(dir, { recursive: true });
    for (const name of ['train.json', 'val.json']) fs.writeFileSync(path.join(dir, name), '{"a.jpg": 0}');
    const source = { fgvc: { root: 'fgvc', dataset: 'CUB_200_2011', mode: 'tune' as const }, part: 'train' as const };
    await expect(load(source, { numClasses: 100 })).rejects.toThrow(
      "fgvc-CUB_200_2011-tune-train has 200 classes, more than the model's 100",
    );
  });

  test('a tensor file', async () => {
    using images = tensor(new Float32Array(3 * 3 * 8 * 8), [3, 3, 8, 8]);
    using labels = tensor(BigInt64Array.from([0n, 7n, 1n]));
    await saveTensors(path.join(temp.dir, 'floats.safetensors'), { images, labels });
    await expect(load('floats.safetensors', { numClasses: 4 })).rejects.toThrow(
      `dataset file '${path.join(temp.dir, 'floats.safetensors')}': label 7 at index 1 is not below 4`,
    );
  });
});

test("a uint8 tensor file (a decoded-image cache given as data) loads with the model's normalization", async () => {
  using images = tensor(new Uint8Array(2 * 8 * 8 * 3), [2, 8, 8, 3]);
  using labels = tensor(BigInt64Array.from([0n, 1n]));
  await saveTensors(path.join(temp.dir, 'pixels.safetensors'), { images, labels });
  const dataset = await load('pixels.safetensors', { numClasses: 2 });
  expect(dataset.normalization).toEqual({ mean: preprocessing.mean, std: preprocessing.std });
});

test('decoded-image caches of two folders with the same base name are separate files, each reused', async () => {
  for (const split of ['train', 'val']) {
    for (const name of ['cat', 'dog']) await writePng(path.join(temp.dir, split, 'images', name, '1.png'), 'blue');
  }
  const cacheDir = path.join(temp.dir, 'caches');
  const stamps = () =>
    fs
      .readdirSync(cacheDir)
      .sort()
      .map((file) => {
        const stat = fs.statSync(path.join(cacheDir, file));
        return [file, stat.mtimeMs, stat.ino]; // the inode: a rewrite renames a new file over the old
      });
  for (const split of ['train', 'val']) await load({ folder: `${split}/images` }, { cacheDir });
  const first = stamps();
  expect(first).toHaveLength(4); // each cache and its SHA-256
  for (const [file] of first) expect(file).toMatch(/^images\.8\.[0-9a-f]{10}\.decoded\.safetensors(\.sha256)?$/);
  for (const split of ['train', 'val']) await load({ folder: `${split}/images` }, { cacheDir });
  expect(stamps()).toEqual(first); // neither was written again
});
