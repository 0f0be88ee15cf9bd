import fs from 'node:fs';
import path from 'node:path';

import { withContext } from '../error-context';
import { PaceFileError, PaceInputError, PaceNotFoundError } from '../errors';
import { DatasetRoot, isInside } from './dataset-root';
import { fsError } from './fs-context';

/** VTAB-1k's 19 tasks (the NOAH layout's folder names) and their class counts, as the PACE reference has them. */
export const VTAB_TASKS: Readonly<Record<string, number>> = {
  cifar: 100,
  caltech101: 102,
  dtd: 47,
  oxford_flowers102: 102,
  oxford_iiit_pet: 37,
  svhn: 10,
  sun397: 397,
  patch_camelyon: 2,
  eurosat: 10,
  resisc45: 45,
  diabetic_retinopathy: 5,
  clevr_count: 8,
  clevr_dist: 6,
  dmlab: 6,
  kitti: 4,
  dsprites_loc: 16,
  dsprites_ori: 16,
  smallnorb_azi: 18,
  smallnorb_ele: 9,
};

/** The few-shot datasets and their class counts, as the PACE reference has them. */
export const FEW_SHOT_DATASETS: Readonly<Record<string, number>> = {
  'fgvc-aircraft': 100,
  food101: 101,
  'oxford-flowers102': 102,
  'oxford-pets': 37,
  'stanford-cars': 196,
};

/** VPT's FGVC datasets (JSON splits) and their class counts. */
export const FGVC_DATASETS: Readonly<Record<string, { numClasses: number; imagesDir: string }>> = {
  CUB_200_2011: { numClasses: 200, imagesDir: 'images' },
  nabirds: { numClasses: 555, imagesDir: 'images' },
  OxfordFlower: { numClasses: 102, imagesDir: '' },
  'Stanford-dogs': { numClasses: 120, imagesDir: 'Images' },
  'Stanford-cars': { numClasses: 196, imagesDir: '' },
};

/** One line of a split list. */
export interface SplitEntry {
  /** The image's absolute path, inside the dataset root. */
  path: string;
  label: number;
  /** 1-based line number in the list file, for messages (an image folder's: the image's place in it). */
  line: number;
  /** Set for an image folder's entries: there is no list line to name. */
  fromFolder?: true;
}

interface ListContext {
  root: string;
  numClasses: number;
  /** Where the root's files really lead; one per list, so each folder is resolved once. */
  realRoot: DatasetRoot;
}

function listContext(options: { root: string; numClasses: number }): ListContext {
  const root = path.resolve(options.root);
  return { root, numClasses: options.numClasses, realRoot: new DatasetRoot(root) };
}

function entryFor(relative: string, label: number, where: string, context: ListContext, line: number): SplitEntry {
  const { root, numClasses } = context;
  if (!Number.isInteger(label) || label < 0)
    throw new PaceInputError(`${where}: label '${label}' is not a non-negative integer`);
  if (label >= numClasses) throw new PaceInputError(`${where}: label ${label} is outside the ${numClasses} classes`);
  const resolved = path.resolve(root, relative);
  if (path.isAbsolute(relative) || !isInside(root, resolved)) {
    throw new PaceInputError(`${where}: path '${relative}' escapes the dataset root ${root}`);
  }
  const target = context.realRoot.escapeOf(resolved);
  if (target !== undefined) {
    throw new PaceInputError(`${where}: path '${relative}' links outside the dataset root ${root} (to ${target})`);
  }
  return { path: resolved, label, line };
}

/**
 * Parses a split list (`<image path> <label>` per line, the path relative to `root`). Every problem is an error
 * naming the file and line: a line without a label, a label that is not an integer or not below `numClasses`,
 * a path that escapes `root` by name or through a symbolic link, an image listed twice (with `repeats: 'keep'`,
 * as the reference's readers, each line is a sample of its own, and only an image listed again with another label
 * is refused). A list that cannot be read is a PaceNotFoundError (missing) or a PaceFileError naming it. Blank
 * lines are skipped; an empty list is an error.
 */
export function parseSplitList(
  file: string,
  options: { root: string; numClasses: number; repeats?: 'refuse' | 'keep' },
): SplitEntry[] {
  const text = readList(file, 'split list');
  const context = listContext(options);
  const entries: SplitEntry[] = [];
  const firstOf = new Map<string, SplitEntry>(); // image path → the entry that listed it first
  text.split(/\r\n|\r|\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '') return;
    const where = `${file}:${index + 1}`;
    const split = line.lastIndexOf(' ');
    if (split <= 0) throw new PaceFileError(`${where}: expected '<image path> <label>', got '${shown(line)}'`);
    const [relative, labelText] = [line.slice(0, split).trim(), line.slice(split + 1)];
    if (!/^\d+$/.test(labelText))
      throw new PaceInputError(`${where}: label '${shown(labelText)}' is not a non-negative integer`);
    const entry = entryFor(relative, Number(labelText), where, context, index + 1);
    const earlier = firstOf.get(entry.path);
    if (earlier !== undefined && earlier.label !== entry.label) {
      throw new PaceFileError(
        `${where}: '${relative}' is listed again with label ${entry.label} (first on line ${earlier.line}, with ` +
          `${earlier.label})`,
      );
    }
    if (earlier !== undefined && options.repeats !== 'keep') {
      throw new PaceFileError(
        `${where}: '${relative}' is listed again (first on line ${earlier.line}); a list names each image once`,
      );
    }
    if (earlier === undefined) firstOf.set(entry.path, entry);
    entries.push(entry);
  });
  if (entries.length === 0) throw new PaceInputError(`${file}: the split list is empty`);
  return entries;
}

/**
 * A VTAB-1k task in the NOAH layout (`<root>/<task>/images/...`, `train800.txt`, `val200.txt`,
 * `train800val200.txt`, `test.txt`): "tune" trains on train800 and tests on val200, "evaluate" trains on
 * train800val200 and tests on test, as the reference does.
 */
export function vtabSplits(
  root: string,
  task: string,
  mode: 'tune' | 'evaluate',
): { train: SplitEntry[]; test: SplitEntry[]; numClasses: number } {
  const numClasses = Object.hasOwn(VTAB_TASKS, task) ? VTAB_TASKS[task] : undefined;
  if (numClasses === undefined) {
    throw new PaceNotFoundError(
      `'${task}' is not a VTAB-1k task (expected one of ${Object.keys(VTAB_TASKS).join(', ')})`,
    );
  }
  const dir = path.join(root, task);
  const files = vtabListFiles(root, task, mode);
  return {
    train: parseSplitList(files.train[0], { root: dir, numClasses }),
    test: parseSplitList(files.test[0], { root: dir, numClasses }),
    numClasses,
  };
}

/** A VTAB-1k task's lists: train800 and val200 when tuning, train800val200 and test when evaluating. */
export function vtabListFiles(
  root: string,
  task: string,
  mode: 'tune' | 'evaluate',
): Record<'train' | 'test', string[]> {
  const dir = path.join(root, task);
  const [train, test] = mode === 'tune' ? ['train800.txt', 'val200.txt'] : ['train800val200.txt', 'test.txt'];
  return { train: [path.join(dir, train)], test: [path.join(dir, test)] };
}

/** A FGVC dataset's split files: train and val when tuning; train and val together, and test, when evaluating. */
export function fgvcListFiles(
  root: string,
  dataset: string,
  mode: 'tune' | 'evaluate',
): Record<'train' | 'test', string[]> {
  const at = (name: string) => path.join(root, dataset, name);
  return mode === 'tune'
    ? { train: [at('train.json')], test: [at('val.json')] }
    : { train: [at('train.json'), at('val.json')], test: [at('test.json')] };
}

/** The list file of a few-shot dataset's part: the training list is the shot count's and the seed's. */
export function fewShotListFile(
  root: string,
  dataset: string,
  part: 'train' | 'val' | 'test',
  options: { shots: number; seed: number },
): string {
  const name =
    part === 'train' ? `train_meta.list.num_shot_${options.shots}.seed_${options.seed}` : `${part}_meta.list`;
  return path.join(root, dataset, 'annotations', name);
}

/**
 * A few-shot dataset in the reference's layout (`<root>/<dataset>/images/...`, `annotations/train_meta.list.
 * num_shot_{k}.seed_{s}`, `val_meta.list`, `test_meta.list`). As the reference, each list's labels are remapped
 * to their rank among the list's classes, which must be exactly the dataset's classes.
 */
export function fewShotSplits(
  root: string,
  dataset: string,
  options: { shots: number; seed: number },
): { train: SplitEntry[]; val: SplitEntry[]; test: SplitEntry[]; numClasses: number } {
  const numClasses = Object.hasOwn(FEW_SHOT_DATASETS, dataset) ? FEW_SHOT_DATASETS[dataset] : undefined;
  if (numClasses === undefined) {
    throw new PaceNotFoundError(
      `'${dataset}' is not a few-shot dataset (expected one of ${Object.keys(FEW_SHOT_DATASETS).join(', ')})`,
    );
  }
  const read = (part: 'train' | 'val' | 'test') => {
    const file = fewShotListFile(root, dataset, part, options);
    // NOAH's oxford-pets 1-shot lists name each image twice: the reference trains on both lines (74 samples).
    const entries = parseSplitList(file, { root: path.join(root, dataset, 'images'), numClasses, repeats: 'keep' });
    const classes = [...new Set(entries.map((e) => e.label))].sort((a, b) => a - b);
    if (classes.length !== numClasses) {
      throw new PaceInputError(`${file}: has ${classes.length} classes, ${dataset} has ${numClasses}`);
    }
    const rank = new Map(classes.map((label, i) => [label, i]));
    return entries.map((e) => ({ ...e, label: rank.get(e.label) as number }));
  };
  return {
    train: read('train'),
    val: read('val'),
    test: read('test'),
    numClasses,
  };
}

/**
 * A FGVC dataset with VPT's JSON splits (`train.json`, `val.json`, `test.json`, each `{ "<image path>": label }`,
 * paths relative to the dataset's image folder). "tune" trains on train and tests on val; "evaluate" trains on
 * train + val and tests on test, as VPT does. Labels from 0 are kept; others (1-based, sparse ids) become their rank
 * among the splits' labels, as the reference's reader maps them, when those are exactly the dataset's classes.
 */
export function fgvcSplits(
  root: string,
  dataset: string,
  mode: 'tune' | 'evaluate',
): { train: SplitEntry[]; test: SplitEntry[]; numClasses: number } {
  const info = Object.hasOwn(FGVC_DATASETS, dataset) ? FGVC_DATASETS[dataset] : undefined;
  if (!info)
    throw new PaceNotFoundError(
      `'${dataset}' is not a FGVC dataset (expected one of ${Object.keys(FGVC_DATASETS).join(', ')})`,
    );
  const dir = path.join(root, dataset);
  // Any label at first: mapped below when past the classes.
  const context = listContext({ root: path.join(dir, info.imagesDir), numClasses: Number.MAX_SAFE_INTEGER });
  // Each image once in what trains (train + val when evaluating) and in what tests: by its resolved path, so
  // `a.jpg` and `./a.jpg` are one image.
  const listedIn = new Map<string, string>();
  const read = (file: string, shared = new Map<string, string>()): SplitEntry[] => {
    const text = readList(file, 'split');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw withContext(error, `${file}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new PaceFileError(`${file}: expected an object of "<image path>": label`);
    }
    const repeatedKey = repeatedJsonKey(text);
    if (repeatedKey !== undefined) {
      throw new PaceFileError(
        `${file}: "${repeatedKey}" is listed twice (JSON keeps only the last); a split names each image once`,
      );
    }
    const entries = Object.entries(parsed).map(([relative, label], i) => {
      const where = `${file} ("${relative}")`;
      const entry = entryFor(relative, label as number, where, context, i + 1);
      const earlier = shared.get(entry.path);
      if (earlier !== undefined) {
        throw new PaceFileError(
          `${where}: the image is listed again (first in ${earlier}); a split names each image once`,
        );
      }
      shared.set(entry.path, where);
      return entry;
    });
    if (entries.length === 0) throw new PaceInputError(`${file}: the split is empty`);
    return entries;
  };
  const files = fgvcListFiles(root, dataset, mode);
  const train = files.train.flatMap((file) => read(file, listedIn));
  const test = files.test.flatMap((file) => read(file));
  return { ...labelsAsClasses(train, test, dir, info.numClasses), numClasses: info.numClasses };
}

/**
 * The splits' labels as class indices: unchanged when all lie below `numClasses`; otherwise each becomes its rank
 * among the labels of both, which must then be `numClasses` values (the reference ranks each file's own labels,
 * which is the same for splits that all hold every class).
 */
function labelsAsClasses(
  train: SplitEntry[],
  test: SplitEntry[],
  dir: string,
  numClasses: number,
): { train: SplitEntry[]; test: SplitEntry[] } {
  let largest = 0;
  for (const entry of [...train, ...test]) largest = Math.max(largest, entry.label);
  if (largest < numClasses) return { train, test };
  const labels = [...new Set([...train, ...test].map((entry) => entry.label))].sort((a, b) => a - b);
  if (labels.length !== numClasses) {
    throw new PaceInputError(
      `${dir}: its splits' labels reach ${largest}, past the dataset's ${numClasses} classes, and are ` +
        `${labels.length} distinct values, not ${numClasses} to take as the classes in order`,
    );
  }
  const rank = new Map(labels.map((label, i) => [label, i]));
  const ranked = (entries: SplitEntry[]) => entries.map((e) => ({ ...e, label: rank.get(e.label) as number }));
  return { train: ranked(train), test: ranked(test) };
}

/**
 * The first key a JSON object's text names twice (JSON.parse keeps the last silently), or undefined. The text is
 * valid JSON (parsed already), so its quotes only delimit strings: each string is passed over once, and is a key
 * when a colon follows it. (A regex did this in time quadratic in a value full of escaped quotes.)
 */
function repeatedJsonKey(text: string): string | undefined {
  const seen = new Set<string>();
  for (let at = text.indexOf('"'); at >= 0;) {
    let end = at + 1;
    while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
    let next = end + 1;
    while (next < text.length && ' \t\n\r'.includes(text[next])) next++;
    if (text[next] === ':') {
      const key = JSON.parse(text.slice(at, end + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    }
    at = text.indexOf('"', end + 1);
  }
  return undefined;
}

/**
 * A list file's text; a missing or unreadable file is an error naming it, and one that is not text (a NUL byte, or
 * bytes that are not UTF-8) is refused as a whole.
 */
function readList(file: string, what: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw fsError(error, `${what} '${file}'`);
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new PaceFileError(`${what} '${file}' is not a text file: it holds a NUL byte at offset ${nul}`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new PaceFileError(`${what} '${file}' is not a text file: its bytes are not UTF-8`);
  }
}

/** A piece of a list quoted in an error: a long one (a line of a file that is not a list) is cut. */
function shown(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}... (${text.length} characters)` : text;
}
