import fs from 'node:fs';
import path from 'node:path';

import { fewShotSplits, fgvcSplits, parseSplitList, vtabSplits, VTAB_TASKS } from '../lib';
import { fixturesDir, makeTempDir } from './support/paths';

const lists = path.resolve(fixturesDir, '..', 'data-lists');
const temp = makeTempDir('splits');
afterAll(() => temp.cleanup());

test('VTAB-1k cifar: the real split files give the expected counts and paths', () => {
  const tune = vtabSplits(path.join(lists, 'vtab-1k'), 'cifar', 'tune');
  const evaluate = vtabSplits(path.join(lists, 'vtab-1k'), 'cifar', 'evaluate');
  expect([tune.train.length, tune.test.length, evaluate.train.length, evaluate.test.length]).toEqual([
    800, 200, 1000, 10000,
  ]);
  expect(tune.numClasses).toBe(100);
  expect(evaluate.test[0]).toEqual({
    path: path.join(lists, 'vtab-1k', 'cifar', 'images', 'test', '000000.jpg'),
    label: 43,
    line: 1,
  });
  expect(Math.max(...evaluate.test.map((e) => e.label))).toBe(99);
  expect(Object.keys(VTAB_TASKS)).toHaveLength(19);
});

test('few-shot Flowers102: every shot count and seed has k images of each of the 102 classes', () => {
  for (const shots of [1, 2, 4, 8, 16]) {
    for (const seed of [0, 1, 2]) {
      const splits = fewShotSplits(path.join(lists, 'few-shot'), 'oxford-flowers102', { shots, seed });
      const perClass = new Array(102).fill(0);
      for (const entry of splits.train) perClass[entry.label]++;
      expect(perClass).toEqual(new Array(102).fill(shots));
      expect(splits.val.length).toBe(1633);
      expect(splits.test.length).toBe(2463);
    }
  }
});

test('bad split lists get errors naming the file, the line and the problem', () => {
  const write = (name: string, text: string) => {
    const file = path.join(temp.dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  const options = { root: temp.dir, numClasses: 10 };
  const noLabel = write('no-label.txt', 'images/a.jpg 1\nimages/b.jpg\n');
  expect(() => parseSplitList(noLabel, options)).toThrow(
    `${noLabel}:2: expected '<image path> <label>', got 'images/b.jpg'`,
  );
  const outside = write('outside.txt', 'images/a.jpg 12\n');
  expect(() => parseSplitList(outside, options)).toThrow(`${outside}:1: label 12 is outside the 10 classes`);
  const notInteger = write('float.txt', 'images/a.jpg 1.5\n');
  expect(() => parseSplitList(notInteger, options)).toThrow("label '1.5' is not a non-negative integer");
  const escaping = write('escape.txt', 'images/../../etc/passwd 1\n');
  expect(() => parseSplitList(escaping, options)).toThrow(
    `${escaping}:1: path 'images/../../etc/passwd' escapes the dataset root`,
  );
  const absolute = write('absolute.txt', '/etc/passwd 1\n');
  expect(() => parseSplitList(absolute, options)).toThrow('escapes the dataset root');
  const empty = write('empty.txt', '\n\n');
  expect(() => parseSplitList(empty, options)).toThrow(`${empty}: the split list is empty`);
  expect(() => vtabSplits(lists, 'imagenet', 'tune')).toThrow("'imagenet' is not a VTAB-1k task");
});

test('FGVC JSON splits: tune and evaluate sets, labels and paths checked', () => {
  const dir = path.join(temp.dir, 'fgvc', 'CUB_200_2011');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'train.json'), JSON.stringify({ '001.Albatross/a.jpg': 0, '002.Auklet/b.jpg': 1 }));
  fs.writeFileSync(path.join(dir, 'val.json'), JSON.stringify({ '001.Albatross/c.jpg': 0 }));
  fs.writeFileSync(path.join(dir, 'test.json'), JSON.stringify({ '200.Wren/d.jpg': 199 }));
  const tune = fgvcSplits(path.join(temp.dir, 'fgvc'), 'CUB_200_2011', 'tune');
  expect(tune.train.map((e) => [path.relative(dir, e.path), e.label])).toEqual([
    [path.join('images', '001.Albatross', 'a.jpg'), 0],
    [path.join('images', '002.Auklet', 'b.jpg'), 1],
  ]);
  expect(tune.test).toHaveLength(1);
  const evaluate = fgvcSplits(path.join(temp.dir, 'fgvc'), 'CUB_200_2011', 'evaluate');
  expect([evaluate.train.length, evaluate.test.length, evaluate.numClasses]).toEqual([3, 1, 200]);
  fs.writeFileSync(path.join(dir, 'test.json'), JSON.stringify({ '../../x.jpg': 3 }));
  expect(() => fgvcSplits(path.join(temp.dir, 'fgvc'), 'CUB_200_2011', 'evaluate')).toThrow(
    "path '../../x.jpg' escapes the dataset root",
  );
  fs.writeFileSync(path.join(dir, 'test.json'), JSON.stringify({ 'x.jpg': 200 }));
  expect(() => fgvcSplits(path.join(temp.dir, 'fgvc'), 'CUB_200_2011', 'evaluate')).toThrow(
    'label 200 is outside the 200 classes',
  );
  fs.writeFileSync(path.join(dir, 'test.json'), '{"x.jpg": ');
  expect(() => fgvcSplits(path.join(temp.dir, 'fgvc'), 'CUB_200_2011', 'evaluate')).toThrow(
    `${path.join(dir, 'test.json')}: `,
  );
});
