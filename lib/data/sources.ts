import { createHash } from 'node:crypto';
import path from 'node:path';

import { z } from 'zod';

import { type PaceError, PaceInputError, PaceOptionError } from '../errors';
import type { Preprocessing } from '../models/specs';
import type { Augmentation } from './augment';
import type { TensorDataset } from './dataset';
import { loadIdxDataset } from './idx';
import { IMAGENET_NORMALIZATION } from './domain-shift';
import type { EvalTransform } from './eval-transform';
import { CENTER_CROP_PCT, type ResizeMode } from './image-decode';
import { imageFolderClasses } from './image-folder';
import { imageFolderEntries, loadImages } from './images';
import { fewShotSplits, fgvcSplits, parseSplitList, vtabSplits, type SplitEntry } from './splits';
import { loadTensorDataset, packedShorterSide } from './tensor-file';

const part = z.enum(['train', 'val', 'test']);

/** Where a dataset comes from, as a run config names it. */
export const DatasetSourceSchema = z.union([
  /** A safetensors file with `images` and `labels`. */
  z.string().min(1),
  z.object({ idx: z.tuple([z.string().min(1), z.string().min(1)]) }).strict(),
  z.object({ folder: z.string().min(1) }).strict(),
  z
    .object({
      list: z.string().min(1),
      root: z.string().min(1),
      numClasses: z.number().int().min(1),
      /**
       * `stretch` (default) to the model's size; `center-crop` (evaluation: shorter side to size/0.875, the
       * centre); `crop-flip` (training: the shorter side stored at size/0.875, random crops over the whole image
       * and flips per batch);
       * `resized-crop-flip` (training: stored the same way, timm's RandomResizedCrop to the model's size and flips).
       */
      transform: z.enum(['stretch', 'center-crop', 'crop-flip', 'resized-crop-flip']).optional(),
      /** `model` (default): the model's mean and std; `imagenet`: ImageNet's, as the benchmarks use. */
      normalization: z.enum(['model', 'imagenet']).optional(),
    })
    .strict(),
  z
    .object({
      vtab: z.object({ root: z.string().min(1), task: z.string().min(1), mode: z.enum(['tune', 'evaluate']) }),
      part,
    })
    .strict(),
  z
    .object({
      fewShot: z.object({
        root: z.string().min(1),
        dataset: z.string().min(1),
        shots: z.number().int().min(1),
        seed: z.number().int().min(0),
      }),
      part,
    })
    .strict(),
  z
    .object({
      fgvc: z.object({ root: z.string().min(1), dataset: z.string().min(1), mode: z.enum(['tune', 'evaluate']) }),
      part,
    })
    .strict(),
]);
export type DatasetSource = z.infer<typeof DatasetSourceSchema>;

/** How a source's images are decoded: the reference's transforms for each benchmark. */
export interface SourceOptions {
  preprocessing: Preprocessing;
  /** Relative paths in the source resolve against this folder. */
  baseDir: string;
  /** A folder for decoded-image caches (one file per source and transform); none when absent. */
  cacheDir?: string;
  /** The model's class count: every label must be below it (checked at load, naming the source). */
  numClasses?: number;
  /**
   * A folder source's labels by these class names (the training folder's, from {@link folderClassNames}), so a
   * validation or test folder missing a class, or ordered otherwise, is labelled as the training folder is.
   */
  classNames?: readonly string[];
}

/** The class names of a folder source (its subfolders, sorted); undefined for other sources. */
export function folderClassNames(source: DatasetSource, baseDir: string): string[] | undefined {
  if (typeof source === 'string' || !('folder' in source)) return undefined;
  return imageFolderClasses(path.resolve(baseDir, source.folder));
}

function pick<T extends { train: SplitEntry[]; test: SplitEntry[]; val?: SplitEntry[] }>(
  splits: T,
  which: string,
): SplitEntry[] {
  if (which === 'val' && !splits.val)
    throw new PaceOptionError("this benchmark has no 'val' part here: use 'train' or 'test'");
  return which === 'train' ? splits.train : which === 'val' ? (splits.val as SplitEntry[]) : splits.test;
}

/**
 * Loads a dataset source: tensor files and IDX pairs as they are; image lists decoded with the reference's
 * transforms (VTAB: stretch to the model size; few-shot training: shorter side to size/0.875 with random
 * crops and flips; few-shot and FGVC evaluation: centre crop). The benchmark layouts are normalised with
 * ImageNet's constants, as the reference does; folders, lists, IDX files and uint8 tensor files with the model's
 * preprocessing. With `numClasses`, a source with more classes or a label not below it is refused at load.
 */
export async function loadDatasetSource(source: DatasetSource, options: SourceOptions): Promise<TensorDataset> {
  const at = (p: string) => path.resolve(options.baseDir, p);
  const { preprocessing, numClasses } = options;
  const modelNormalization = { mean: preprocessing.mean, std: preprocessing.std };
  if (typeof source === 'string')
    return loadTensorDataset(at(source), { normalization: modelNormalization, numClasses });
  if ('idx' in source) {
    return loadIdxDataset(at(source.idx[0]), at(source.idx[1]), { normalization: modelNormalization, numClasses });
  }
  const plan = imageSourcePlan(source, at, preprocessing.imgSize, options.classNames);
  if (numClasses !== undefined && plan.classes > numClasses) throw plan.moreClassesThan(numClasses);
  const stored = plan.augment ? Math.floor(preprocessing.imgSize / CENTER_CROP_PCT) : preprocessing.imgSize;
  // Training crops range over the whole image, as the reference's RandomCrop (and timm's RandomResizedCrop) do.
  const resize = plan.augment ? 'shorter' : plan.resize;
  const cache = options.cacheDir ? path.join(at(options.cacheDir), cacheFileName(plan, stored, resize)) : undefined;
  // The PACE reference (and VPT for FGVC) normalise the benchmarks with ImageNet's constants whatever the
  // backbone; other sources use the model's own pretrained configuration.
  const normalization = plan.imagenet ? IMAGENET_NORMALIZATION : modelNormalization;
  const { augment } = plan;
  const { dataset } = await loadImages(plan.entries, { size: stored, resize, normalization, augment, cache });
  return dataset;
}

/** An image source made concrete: its entries and classes, how to decode them, and what names its cache. */
interface ImageSourcePlan {
  entries: SplitEntry[];
  classes: number;
  /** The error for a model with fewer classes, naming the source. */
  moreClassesThan: (modelClasses: number) => PaceError;
  /** The readable part of its cache file's name, and the resolved paths that tell it from other sources. */
  name: string;
  paths: string[];
  resize: ResizeMode;
  augment?: Augmentation;
  /** Normalised with ImageNet's constants (else the model's). */
  imagenet: boolean;
}

type ImageSource = Exclude<DatasetSource, string | { idx: unknown }>;
type ListSource = Extract<ImageSource, { list: string }>;
type BenchmarkSource = Exclude<ImageSource, ListSource | { folder: string }>;

function imageSourcePlan(
  source: ImageSource,
  at: (p: string) => string,
  size: number,
  classNames?: readonly string[],
): ImageSourcePlan {
  if ('folder' in source) return folderPlan(source.folder, at, classNames);
  if ('list' in source) return listPlan(source, at, size);
  return benchmarkPlan(source, at, size);
}

function folderPlan(folder: string, at: (p: string) => string, classNames?: readonly string[]): ImageSourcePlan {
  const { entries, classes } = imageFolderEntries(at(folder), classNames);
  return {
    entries,
    classes: classes.length,
    moreClassesThan: (model) =>
      new PaceInputError(`image folder '${folder}' has ${classes.length} classes, more than the model's ${model}`),
    name: path.basename(folder),
    paths: [at(folder)],
    ...evaluationDecoding({ folder }),
  };
}

function listPlan(source: ListSource, at: (p: string) => string, size: number): ImageSourcePlan {
  const { list, root, numClasses, transform } = source;
  const augments: Record<string, Augmentation> = {
    'crop-flip': { crop: size, flip: true },
    'resized-crop-flip': { resizedCrop: true, flip: true },
  };
  return {
    entries: parseSplitList(at(list), { root: at(root), numClasses }),
    classes: numClasses,
    moreClassesThan: (model) =>
      new PaceOptionError(`split list '${list}': numClasses ${numClasses} is more than the model's ${model}`),
    name: path.basename(list),
    paths: [at(list), at(root)],
    ...evaluationDecoding(source),
    augment: transform ? augments[transform] : undefined,
  };
}

/** VTAB stretches to the model's size; few-shot and FGVC center-crop, and train on stored crops with flips. */
function benchmarkPlan(source: BenchmarkSource, at: (p: string) => string, size: number): ImageSourcePlan {
  const { splits, name, root } =
    'vtab' in source
      ? {
          splits: vtabSplits(at(source.vtab.root), source.vtab.task, source.vtab.mode),
          name: `vtab-${source.vtab.task}-${source.vtab.mode}`,
          root: source.vtab.root,
        }
      : 'fewShot' in source
        ? {
            splits: fewShotSplits(at(source.fewShot.root), source.fewShot.dataset, source.fewShot),
            name: `fewshot-${source.fewShot.dataset}-${source.fewShot.shots}-${source.fewShot.seed}`,
            root: source.fewShot.root,
          }
        : {
            splits: fgvcSplits(at(source.fgvc.root), source.fgvc.dataset, source.fgvc.mode),
            name: `fgvc-${source.fgvc.dataset}-${source.fgvc.mode}`,
            root: source.fgvc.root,
          };
  const { resize, imagenet } = evaluationDecoding(source);
  const part = `${name}-${source.part}`;
  return {
    entries: pick(splits, source.part),
    classes: splits.numClasses,
    moreClassesThan: (model) =>
      new PaceInputError(`${part} has ${splits.numClasses} classes, more than the model's ${model}`),
    name: part,
    paths: [at(root)],
    resize,
    augment: resize === 'center-crop' && source.part === 'train' ? { crop: size, flip: true } : undefined,
    imagenet,
  };
}

/**
 * How a source's images are evaluated, told by its kind alone: VTAB, folders and `stretch` lists stretch; few-shot,
 * FGVC and cropped lists take the centre (their training crops are evaluated on it); the benchmarks and `imagenet`
 * lists normalise with ImageNet's constants.
 */
function evaluationDecoding(source: ImageSource): { resize: 'stretch' | 'center-crop'; imagenet: boolean } {
  if ('folder' in source) return { resize: 'stretch', imagenet: false };
  if ('list' in source) {
    const cropped = source.transform !== undefined && source.transform !== 'stretch';
    return { resize: cropped ? 'center-crop' : 'stretch', imagenet: source.normalization === 'imagenet' };
  }
  return { resize: 'vtab' in source ? 'stretch' : 'center-crop', imagenet: true };
}

/**
 * The transform that evaluates a source's images, as `pace export` records it for `pace serve`: the resize and
 * normalisation its loads use (relative paths against `baseDir`). Tensor files and IDX pairs are resized to the
 * model's size (a stretch) and take the model's normalisation, as their uint8 pixels do; a tensor file of packed
 * images (`extents`) is centre-cropped from images whose shorter side it stored.
 */
export function evaluationTransformOf(
  source: DatasetSource,
  preprocessing: Preprocessing,
  baseDir: string,
): EvalTransform {
  const model = { mean: [...preprocessing.mean], std: [...preprocessing.std] };
  if (typeof source === 'string' || 'idx' in source) {
    const shorter = typeof source === 'string' ? packedShorterSide(path.resolve(baseDir, source)) : undefined;
    if (shorter === undefined)
      return { resize: 'stretch', cropPct: CENTER_CROP_PCT, interpolation: 'bicubic', ...model };
    // floor(size / cropPct) must give back the stored side: the benchmarks' 0.875 when it is theirs
    const size = preprocessing.imgSize;
    const cropPct = Math.floor(size / CENTER_CROP_PCT) === shorter ? CENTER_CROP_PCT : size / (shorter + 0.5);
    return { resize: 'center-crop', cropPct: Math.min(1, cropPct), interpolation: 'bilinear', ...model };
  }
  const { resize, imagenet } = evaluationDecoding(source);
  const normalization = imagenet
    ? { mean: [...IMAGENET_NORMALIZATION.mean], std: [...IMAGENET_NORMALIZATION.std] }
    : model;
  const interpolation = resize === 'stretch' ? 'bicubic' : 'bilinear';
  return { resize, cropPct: CENTER_CROP_PCT, interpolation, ...normalization };
}

/**
 * `<name>.<stored size>.<hash>.decoded.safetensors`: the hash (of the resolved paths and the resize, which with the
 * size make the pixels) keeps two sources of one base name (`train/images`, `val/images`) from sharing, and so
 * evicting, each other's cache.
 */
function cacheFileName(plan: ImageSourcePlan, stored: number, resize: ResizeMode): string {
  const identity = JSON.stringify({ paths: plan.paths, resize });
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 10);
  return `${plan.name}.${stored}.${hash}.decoded.safetensors`;
}
