// Few-shot label remapping (README Data: "labels remapped as the reference"). The PACE reference
// (Vision/utils/few_shot.py, flist_reader) parses each label as an int, asserts that the list's classes are
// exactly 0..K-1 for the dataset's K, and maps each label to its rank among them. On any list it accepts that
// rank is the label itself; every other list is refused. These tests hold pace-peft to both halves.
import fs from 'node:fs';
import path from 'node:path';

import { fewShotSplits } from '../lib';
import { fixturesDir, makeTempDir } from './support/paths';

const lists = path.resolve(fixturesDir, '..', 'data-lists', 'few-shot');
const temp = makeTempDir('few-shot-labels');
afterAll(() => temp.cleanup());

/** `<path> <label>` lines split as the reference does (the label is the last space-separated field). */
function rawLabels(file: string): { path: string; label: number }[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const cut = line.trimEnd().lastIndexOf(' ');
      return { path: line.slice(0, cut), label: Number(line.slice(cut + 1)) };
    });
}

describe('the real Flowers102 lists keep their labels (the rank of label k among 0..101 is k)', () => {
  // Bug caught: ranks taken in order of first appearance (76, the first line's label, would become 0), or
  // among labels sorted as strings (0, 1, 10, 100, 101, 11, ...: 10 would become 2).
  const annotations = path.join(lists, 'oxford-flowers102', 'annotations');

  test('1-shot seed 0: the first lines by hand, then every line of every part against the files', () => {
    const splits = fewShotSplits(lists, 'oxford-flowers102', { shots: 1, seed: 0 });
    const images = path.join(lists, 'oxford-flowers102', 'images');
    expect(splits.train.slice(0, 3)).toEqual([
      { path: path.join(images, 'image_00070.jpg'), label: 76, line: 1 },
      { path: path.join(images, 'image_00415.jpg'), label: 72, line: 2 },
      { path: path.join(images, 'image_00460.jpg'), label: 87, line: 3 },
    ]);
    const parts: [keyof typeof splits, string][] = [
      ['train', 'train_meta.list.num_shot_1.seed_0'],
      ['val', 'val_meta.list'],
      ['test', 'test_meta.list'],
    ];
    for (const [part, file] of parts) {
      const expected = rawLabels(path.join(annotations, file));
      const entries = splits[part] as { path: string; label: number }[];
      expect([part, entries.map((e) => e.label)]).toEqual([part, expected.map((e) => e.label)]);
      expect(entries.map((e) => path.relative(images, e.path))).toEqual(expected.map((e) => e.path));
    }
    expect(splits.numClasses).toBe(102);
  });

  test('16-shot seed 2: the 16 images of class 10 keep label 10', () => {
    const { train } = fewShotSplits(lists, 'oxford-flowers102', { shots: 16, seed: 2 });
    const expected = rawLabels(path.join(annotations, 'train_meta.list.num_shot_16.seed_2'));
    const tens = expected.flatMap((e, i) => (e.label === 10 ? [i] : []));
    expect(tens).toHaveLength(16);
    expect(tens.map((i) => train[i].label)).toEqual(new Array(16).fill(10));
  });
});

describe('lists whose classes are not exactly 0..K-1 are refused, as the reference asserts', () => {
  // Bug caught: a list with a gap or a label past K silently remapped to ranks (training on mislabelled
  // classes), or a non-numeric label accepted.
  const dataset = 'oxford-pets'; // 37 classes
  function writeDataset(root: string, train: string[]): string {
    const annotations = path.join(root, dataset, 'annotations');
    fs.mkdirSync(annotations, { recursive: true });
    const full = Array.from({ length: 37 }, (_, k) => `class${k}/a.jpg ${k}`);
    fs.writeFileSync(path.join(annotations, 'train_meta.list.num_shot_1.seed_0'), train.join('\n') + '\n');
    fs.writeFileSync(path.join(annotations, 'val_meta.list'), full.join('\n') + '\n');
    fs.writeFileSync(path.join(annotations, 'test_meta.list'), full.join('\n') + '\n');
    return path.join(annotations, 'train_meta.list.num_shot_1.seed_0');
  }
  const classesBut = (skip: number) =>
    Array.from({ length: 37 }, (_, k) => k).flatMap((k) => (k === skip ? [] : [`class${k}/a.jpg ${k}`]));

  test('a complete list in shuffled order is accepted with its labels unchanged', () => {
    const root = path.join(temp.dir, 'complete');
    const order = Array.from({ length: 37 }, (_, k) => (k * 11) % 37);
    writeDataset(
      root,
      order.map((k) => `class${k}/a.jpg ${k}`),
    );
    expect(fewShotSplits(root, dataset, { shots: 1, seed: 0 }).train.map((e) => e.label)).toEqual(order);
  });

  test('a gap in the classes (no 36): refused, naming the file and both counts', () => {
    const file = writeDataset(path.join(temp.dir, 'gap'), classesBut(36));
    expect(() => fewShotSplits(path.join(temp.dir, 'gap'), dataset, { shots: 1, seed: 0 })).toThrow(
      `${file}: has 36 classes, oxford-pets has 37`,
    );
  });

  test('non-contiguous labels (5 replaced by 40): refused at the line of the label out of range', () => {
    const train = classesBut(-1).map((line) => (line === 'class5/a.jpg 5' ? 'class5/a.jpg 40' : line));
    const file = writeDataset(path.join(temp.dir, 'sparse'), train);
    expect(() => fewShotSplits(path.join(temp.dir, 'sparse'), dataset, { shots: 1, seed: 0 })).toThrow(
      `${file}:6: label 40 is outside the 37 classes`,
    );
  });

  test('string labels: refused at their line', () => {
    const train = classesBut(-1).map((line) => (line === 'class2/a.jpg 2' ? 'class2/a.jpg Bengal' : line));
    const file = writeDataset(path.join(temp.dir, 'strings'), train);
    expect(() => fewShotSplits(path.join(temp.dir, 'strings'), dataset, { shots: 1, seed: 0 })).toThrow(
      `${file}:3: label 'Bengal' is not a non-negative integer`,
    );
  });
});

describe('a few-shot list that names an image twice keeps both lines, as the reference reads them', () => {
  // Bug (review): NOAH's oxford-pets 1-shot lists (all three seeds) give each of the 37 images on two
  // consecutive lines, and the reference trains on the 74 lines; the list was refused as naming an image twice,
  // so the paper's pets 1-shot column could not run.
  const dataset = 'oxford-pets';
  function writeTwice(root: string, labelOfRepeat: (k: number) => number): string {
    const annotations = path.join(root, dataset, 'annotations');
    fs.mkdirSync(annotations, { recursive: true });
    const once = Array.from({ length: 37 }, (_, k) => `class${k}/a.jpg ${k}`);
    const twice = Array.from({ length: 37 }, (_, k) => [`class${k}/a.jpg ${k}`, `class${k}/a.jpg ${labelOfRepeat(k)}`]);
    const train = path.join(annotations, 'train_meta.list.num_shot_1.seed_0');
    fs.writeFileSync(train, twice.flat().join('\n') + '\n');
    fs.writeFileSync(path.join(annotations, 'val_meta.list'), once.join('\n') + '\n');
    fs.writeFileSync(path.join(annotations, 'test_meta.list'), once.join('\n') + '\n');
    return train;
  }

  test('74 samples from 37 images, each line its own sample with its label', () => {
    const root = path.join(temp.dir, 'pets-twice');
    writeTwice(root, (k) => k);
    const { train, val } = fewShotSplits(root, dataset, { shots: 1, seed: 0 });
    expect(train).toHaveLength(74);
    expect(train.map((e) => e.label)).toEqual(Array.from({ length: 74 }, (_, i) => Math.floor(i / 2)));
    expect(train[1]).toEqual({ ...train[0], line: 2 });
    expect(val).toHaveLength(37);
  });

  test('an image listed again with another label is refused at that line', () => {
    const root = path.join(temp.dir, 'pets-relabelled');
    const file = writeTwice(root, (k) => (k === 3 ? 4 : k));
    expect(() => fewShotSplits(root, dataset, { shots: 1, seed: 0 })).toThrow(
      `${file}:8: 'class3/a.jpg' is listed again with label 4 (first on line 7, with 3)`,
    );
  });
});
