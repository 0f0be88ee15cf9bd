import fs from 'node:fs';

import { z } from 'zod';

import type { TensorDataset } from '../data/dataset';
import {
  checkClassSubset,
  classesOf,
  DOMAIN_SHIFT_RESIZES,
  DOMAIN_SHIFT_SETS,
  domainShiftEntries,
  domainShiftSet,
  IMAGENET_CLASSES,
  IMAGENET_NORMALIZATION,
  type DomainShiftResize,
  type DomainShiftSetName,
} from '../data/domain-shift';
import { loadImages } from '../data/images';
import { checkNormalization, type Normalization } from '../data/normalization';
import type { SplitEntry } from '../data/splits';
import { withContext } from '../error-context';
import { PaceError, PaceInputError, PaceNotFoundError, PaceOptionError } from '../errors';
import type { Model } from '../models/model';
import { parseOptions } from '../options';
import { evaluateDataset } from './evaluate';

/**
 * Which of the 1,000 logits take part in a set's argmax and loss: `set` (the default: the set's own classes,
 * ImageNet-A's and -R's 200, every class for the others), `all`, `present` (the classes among the labels the list
 * or dataset holds) or an explicit list of class indices.
 */
export const ClassSubsetSchema = z.union([
  z.enum(['set', 'all', 'present']),
  z
    .array(
      z
        .number()
        .int()
        .min(0)
        .max(IMAGENET_CLASSES - 1),
    )
    .min(1),
]);
export type ClassSubset = z.infer<typeof ClassSubsetSchema>;

/** A set given as a list file and the folder its paths start from (as a run config names it). */
export const DomainShiftListSchema = z
  .object({
    /** `<relative path> <label>` per line (CoOp's / NOAH's `val_meta.list`). */
    list: z.string().min(1),
    /** The folder the list's paths are relative to. */
    root: z.string().min(1),
    classes: ClassSubsetSchema.optional(),
    /**
     * How an image is brought to the model's size: `center-crop` (the default: the shorter side to size/0.875,
     * bilinear, then the centre, as PACE's evaluation transforms) or `squash-crop` (both sides to size/0.875,
     * bicubic, then the centre, as NOAH's released evaluation code).
     */
    resize: z.enum(DOMAIN_SHIFT_RESIZES).optional(),
  })
  .strict();
export type DomainShiftList = z.infer<typeof DomainShiftListSchema>;

/** The sets to evaluate, by name (`imagenet`, `imagenet-sketch`, `imagenetv2`, `imagenet-a`, `imagenet-r`). */
export const DomainShiftTargetsSchema = z
  .record(z.string(), DomainShiftListSchema)
  .refine((targets) => Object.keys(targets).length > 0, 'name at least one set')
  .superRefine((targets, context) => {
    for (const name of Object.keys(targets)) {
      if (!DOMAIN_SHIFT_SETS.some((s) => s.name === name)) {
        context.addIssue({
          code: 'custom',
          path: [name],
          message: `not a domain-adaptation set (expected one of ${DOMAIN_SHIFT_SETS.map((s) => s.name).join(', ')})`,
        });
      }
    }
  });

/** A set to evaluate: a list file with its image root, or a dataset already in memory (labels 0-999). */
export type DomainShiftTarget = DomainShiftList | { dataset: TensorDataset; classes?: ClassSubset };

/** Options of {@link evaluateDomainShift}. */
export interface EvaluateDomainShiftOptions {
  targets: Partial<Record<DomainShiftSetName, DomainShiftTarget>>;
  /** Images per forward (default 64). */
  batchSize?: number;
  precision?: 'fp32' | 'tf32' | 'bf16';
  /** Images of a list decoded at once (default 1024), so a large set never sits in memory whole. */
  decodeChunk?: number;
  /** Called after each chunk of images (and after a dataset target). */
  onProgress?: (progress: { set: DomainShiftSetName; done: number; total: number }) => void;
  /** Stops the evaluation before its next batch of images: the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * The mean and std list targets are normalised with: the ones the model was trained with (default ImageNet's,
   * as the reference trains and evaluates).
   */
  normalization?: Normalization;
}

/** One set's figures. */
export interface DomainShiftResult {
  samples: number;
  /** The number of classes the logits were restricted to (1000 without a mask). */
  classes: number;
  /** How a list's images were resized (a dataset target's were given as they are). */
  resize?: DomainShiftResize;
  /** Top-1 accuracy over the restricted logits, in [0, 1]. */
  top1: number;
  /** Mean cross-entropy of the softmax over the restricted logits. */
  loss: number;
}

/** What {@link evaluateDomainShift} returns: each set evaluated, in the paper's column order, and the means. */
export interface DomainShiftReport {
  sets: { name: DomainShiftSetName; title: string; result: DomainShiftResult }[];
  /** The mean top-1 of the shifted sets (every set but ImageNet), when any was evaluated. */
  targetMean?: number;
  /** The mean top-1 over every set evaluated. */
  mean: number;
}

/** The classes a set is scored over (undefined: all 1,000), from its option and its labels. */
function subsetFor(
  name: DomainShiftSetName,
  classes: ClassSubset | undefined,
  labels: () => number[],
): number[] | undefined {
  const choice = classes ?? 'set';
  if (choice === 'all') return undefined;
  if (choice === 'set') {
    const own = domainShiftSet(name).classes;
    return own && [...own];
  }
  return checkClassSubset(choice === 'present' ? classesOf(labels()) : choice, IMAGENET_CLASSES, `${name}'s classes`);
}

/** The decoded images of `entries`, as the evaluation transform (`resize`, then `normalization`) makes them. */
async function decodeChunk(
  entries: SplitEntry[],
  list: string,
  size: number,
  resize: DomainShiftResize,
  normalization: Normalization,
): Promise<TensorDataset> {
  try {
    const { dataset } = await loadImages(entries, { size, resize, normalization, progress: false });
    return dataset;
  } catch (error) {
    throw withContext(error, `${list}: ${(error as Error).message}`);
  }
}

/**
 * Evaluates a model with ImageNet-1K's 1,000-class head on the paper's domain-adaptation sets: ImageNet val
 * (the source) and the shifted targets ImageNet-Sketch, -V2, -A and -R. ImageNet-A and -R cover 200 classes
 * each: by default their logits are restricted to those classes (the argmax and the softmax run over the subset
 * only; `classes: 'all'` scores them over all 1,000, as NOAH's released code does). List targets are decoded as
 * the evaluation transform of the reference (shorter side to size/0.875, centre crop, or a target's `resize`;
 * ImageNet's mean and std unless `normalization` says otherwise) a chunk at a time, the next chunk decoding
 * while the current one runs. A missing image is an error naming the list, the image and its line before anything
 * is decoded; a corrupt one when it is reached. The model runs in
 * evaluation mode and is left in the mode it had. `signal` stops it before the next batch.
 */
export async function evaluateDomainShift(
  model: Model,
  options: EvaluateDomainShiftOptions,
): Promise<DomainShiftReport> {
  const batchSize = parseOptions(z.number().int().min(1).default(64), options.batchSize, 'options.batchSize');
  const chunk = parseOptions(z.number().int().min(1).default(1024), options.decodeChunk, 'options.decodeChunk');
  const normalization = checkNormalization(options.normalization ?? IMAGENET_NORMALIZATION, 'options.normalization');
  // Every list's lines, labels and images checked before the first is decoded: a missing image of the last set
  // must not end the call after the others have run.
  const lists = readListTargets(options.targets, model.spec.numClasses);
  // The native evaluation runs in evaluation mode and leaves the model's mode as it found it.
  const sets: DomainShiftReport['sets'] = [];
  for (const set of DOMAIN_SHIFT_SETS) {
    const target = options.targets[set.name];
    if (!target) continue;
    const score = scorer(model, set.name, batchSize, { ...options, normalization });
    try {
      const result = 'dataset' in target ? await score.dataset(target) : await score.list(lists.get(set.name)!, chunk);
      sets.push({ name: set.name, title: set.title, result });
    } catch (error) {
      throw inContext(error, set.name, options.signal);
    }
  }
  options.signal?.throwIfAborted(); // a stop asked during the last chunk: no report of a stopped evaluation
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const targets = sets.filter((s) => !domainShiftSet(s.name).source).map((s) => s.result.top1);
  return {
    sets,
    targetMean: targets.length > 0 ? mean(targets) : undefined,
    mean: mean(sets.map((s) => s.result.top1)),
  };
}

/**
 * A failure while scoring, its message led by where it happened (a set, a list's lines); a stop asked through
 * `signal` and errors that are not the library's (a defect's TypeError) are thrown as they are.
 */
function inContext(error: unknown, where: string, signal: AbortSignal | undefined): unknown {
  if (!(error instanceof PaceError) || (signal?.aborted && error === signal.reason)) return error;
  return withContext(error, `${where}: ${error.message}`);
}

/**
 * What evaluateDomainShift would refuse, checked before a fit that ends with it, without decoding an image: the
 * set names, the head's classes, each list's lines, labels and class subset, and that each image it names exists.
 */
export function checkDomainShiftTargets(
  targets: Partial<Record<DomainShiftSetName, DomainShiftTarget>>,
  numClasses: number,
): void {
  readListTargets(targets, numClasses);
}

/** The sets given a target (a name given `undefined` stands for no set, as a missing one). */
function givenTargets(targets: EvaluateDomainShiftOptions['targets']): [DomainShiftSetName, DomainShiftTarget][] {
  return (Object.entries(targets) as [DomainShiftSetName, DomainShiftTarget | undefined][]).filter(
    (entry): entry is [DomainShiftSetName, DomainShiftTarget] => entry[1] !== undefined,
  );
}

/** {@link checkDomainShiftTargets}'s checks; returns the list targets as read, by set. */
function readListTargets(
  targets: Partial<Record<DomainShiftSetName, DomainShiftTarget>>,
  numClasses: number,
): Map<DomainShiftSetName, ListEntries> {
  checkSetsAndHead(targets, numClasses);
  const lists = new Map<DomainShiftSetName, ListEntries>();
  for (const [name, target] of givenTargets(targets)) {
    if (typeof target !== 'object' || target === null) {
      throw new PaceOptionError(`options.targets['${name}']: expected { list, root } or { dataset }`);
    }
    if ('dataset' in target) continue;
    const read = listEntries(name, target);
    const missing = read.entries.find((entry) => !fs.existsSync(entry.path));
    if (missing) {
      throw new PaceNotFoundError(`${read.list}: image '${missing.path}' (list line ${missing.line}) does not exist`);
    }
    lists.set(name, read);
  }
  return lists;
}

function checkSetsAndHead(targets: EvaluateDomainShiftOptions['targets'], numClasses: number): void {
  if (typeof targets !== 'object' || targets === null)
    throw new PaceOptionError('options.targets: expected the sets by name');
  const names = givenTargets(targets).map(([name]) => name);
  names.forEach(domainShiftSet);
  if (names.length === 0) throw new PaceOptionError('options.targets: name at least one set');
  if (numClasses !== IMAGENET_CLASSES) {
    throw new PaceOptionError(
      `the domain-adaptation sets are labelled with ImageNet-1K's ${IMAGENET_CLASSES} classes; this model's head has ${numClasses}`,
    );
  }
}

/** A list target as read: its file, its entries, the classes it is scored over (undefined: all), its resize. */
interface ListEntries {
  list: string;
  entries: SplitEntry[];
  classes: number[] | undefined;
  resize: DomainShiftResize;
}

/** A list target's entries and the classes it is scored over, each label checked to be among them. */
function listEntries(name: DomainShiftSetName, target: DomainShiftList): ListEntries {
  const {
    list,
    root,
    resize = 'center-crop',
  } = parseOptions(DomainShiftListSchema, target, `options.targets['${name}']`);
  const entries = domainShiftEntries(list, root);
  const classes = subsetFor(name, target.classes, () => entries.map((e) => e.label));
  const members = classes && new Set(classes);
  const outside = members && entries.find((e) => !members.has(e.label));
  if (outside) {
    throw new PaceInputError(
      `${list}:${outside.line}: label ${outside.label} is not among the ${members.size} classes of ${name}'s class subset`,
    );
  }
  return { list, entries, classes, resize };
}

/** Scoring one set, from a dataset or from a list: the native evaluation of each chunk, its counts summed. */
function scorer(
  model: Model,
  name: DomainShiftSetName,
  batchSize: number,
  options: EvaluateDomainShiftOptions & { normalization: Normalization },
) {
  let samples = 0;
  let correct = 0;
  let lossSum = 0;
  const run = async (dataset: TensorDataset, classes: number[] | undefined, total: number) => {
    options.signal?.throwIfAborted();
    const report = await evaluateDataset(model, dataset, {
      batchSize,
      classes,
      precision: options.precision,
      signal: options.signal,
    });
    samples += report.samples;
    correct += report.confusion.reduce((sum, row, i) => sum + row[i], 0);
    lossSum += report.loss * report.samples;
    options.onProgress?.({ set: name, done: samples, total });
  };
  const result = (classes: number[] | undefined, resize?: DomainShiftResize): DomainShiftResult => ({
    samples,
    classes: classes?.length ?? IMAGENET_CLASSES,
    ...(resize && { resize }),
    top1: correct / samples,
    loss: lossSum / samples,
  });
  return {
    async dataset(target: { dataset: TensorDataset; classes?: ClassSubset }): Promise<DomainShiftResult> {
      const { dataset } = target;
      if (dataset.length === 0) throw new PaceInputError('the dataset is empty');
      const classes = subsetFor(name, target.classes, () => Array.from(dataset.labels.toBigInt64Array(), Number));
      await run(dataset, classes, dataset.length);
      return result(classes);
    },
    async list({ list, entries, classes, resize }: ListEntries, chunk: number): Promise<DomainShiftResult> {
      const size = model.spec.imgSize;
      // The next chunk decodes while this one is evaluated. Its failure is handled here at once, so that it is
      // not an unhandled rejection (which ends the process) before the loop comes to await it.
      const prefetch = (from: number) => {
        const decoding = decodeChunk(entries.slice(from, from + chunk), list, size, resize, options.normalization);
        decoding.catch(() => undefined);
        return decoding;
      };
      let pending: Promise<TensorDataset> | undefined = prefetch(0);
      try {
        for (let from = 0; from < entries.length; from += chunk) {
          const dataset: TensorDataset = await (pending as Promise<TensorDataset>);
          pending = from + chunk < entries.length ? prefetch(from + chunk) : undefined;
          try {
            await run(dataset, classes, entries.length);
          } catch (error) {
            const lines = `lines ${entries[from].line}-${entries[Math.min(from + chunk, entries.length) - 1].line}`;
            throw inContext(error, `${list} (${lines})`, options.signal);
          } finally {
            dataset.images.dispose();
            dataset.labels.dispose();
          }
        }
      } finally {
        // a chunk still decoding when a batch failed: its result (or error) is dropped
        pending?.then(
          (d) => {
            d.images.dispose();
            d.labels.dispose();
          },
          () => undefined,
        );
      }
      return result(classes, resize);
    },
  };
}
