import path from 'node:path';

import { z } from 'zod';

import { PaceOptionError } from '../errors';
import type { Preprocessing } from '../models/specs';
import type { Augmentation } from './augment';
import type { TensorDataset } from './dataset';
import { loadIdxDataset } from './idx';
import { IMAGENET_NORMALIZATION } from './domain-shift';
import { imageFolderEntries, loadImages } from './images';
import { fewShotSplits, fgvcSplits, parseSplitList, vtabSplits, type SplitEntry } from './splits';
import { loadTensorDataset } from './tensor-file';

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
       * centre); `crop-flip` (training: stored as `cover` at size/0.875, random crops and flips per batch);
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
  /** A folder for decoded-image caches (one file per split); none when absent. */
  cacheDir?: string;
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
 * ImageNet's constants, as the reference does; folders, lists and IDX files with the model's preprocessing.
 */
export async function loadDatasetSource(source: DatasetSource, options: SourceOptions): Promise<TensorDataset> {
  const at = (p: string) => path.resolve(options.baseDir, p);
  const { preprocessing } = options;
  const size = preprocessing.imgSize;
  // The PACE reference (and VPT for FGVC) normalise the benchmarks with ImageNet's constants whatever the
  // backbone; other sources use the model's own pretrained configuration.
  const benchmark =
    typeof source !== 'string' &&
    ('vtab' in source ||
      'fewShot' in source ||
      'fgvc' in source ||
      ('list' in source && source.normalization === 'imagenet'));
  const normalization = benchmark ? IMAGENET_NORMALIZATION : { mean: preprocessing.mean, std: preprocessing.std };
  if (typeof source === 'string') return loadTensorDataset(at(source));
  if ('idx' in source) return loadIdxDataset(at(source.idx[0]), at(source.idx[1]), { normalization });

  let entries: SplitEntry[];
  let resize: 'stretch' | 'center-crop' | 'cover' = 'stretch';
  let augment: Augmentation | undefined;
  let name: string;
  if ('folder' in source) {
    entries = imageFolderEntries(at(source.folder)).entries;
    name = path.basename(source.folder);
  } else if ('list' in source) {
    entries = parseSplitList(at(source.list), { root: at(source.root), numClasses: source.numClasses });
    name = path.basename(source.list);
    if (source.transform === 'center-crop') resize = 'center-crop';
    if (source.transform === 'crop-flip') augment = { crop: size, flip: true };
    if (source.transform === 'resized-crop-flip') augment = { resizedCrop: true, flip: true };
  } else if ('vtab' in source) {
    entries = pick(vtabSplits(at(source.vtab.root), source.vtab.task, source.vtab.mode), source.part);
    name = `vtab-${source.vtab.task}-${source.vtab.mode}-${source.part}`;
  } else if ('fewShot' in source) {
    const { root, dataset, shots, seed } = source.fewShot;
    entries = pick(fewShotSplits(at(root), dataset, { shots, seed }), source.part);
    name = `fewshot-${dataset}-${shots}-${seed}-${source.part}`;
    resize = 'center-crop';
    if (source.part === 'train') augment = { crop: size, flip: true };
  } else {
    entries = pick(fgvcSplits(at(source.fgvc.root), source.fgvc.dataset, source.fgvc.mode), source.part);
    name = `fgvc-${source.fgvc.dataset}-${source.fgvc.mode}-${source.part}`;
    resize = 'center-crop';
    if (source.part === 'train') augment = { crop: size, flip: true };
  }
  const stored = augment ? Math.floor(size / 0.875) : size;
  const cache = options.cacheDir ? path.join(at(options.cacheDir), `${name}.${stored}.decoded.safetensors`) : undefined;
  const { dataset } = await loadImages(entries, {
    size: stored,
    resize: augment ? 'cover' : resize,
    normalization,
    augment,
    cache,
  });
  return dataset;
}
