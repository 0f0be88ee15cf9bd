import os from 'node:os';

import { SingleBar } from 'cli-progress';
import { z } from 'zod';

import { withContext } from '../error-context';
import { PaceInputError } from '../errors';
import { RowsTensorWriter, tensor, tensorFromPieces, type Tensor } from '../tensor';
import { AugmentationSchema } from './augment';
import { parseOptions } from '../options';
import { TensorDataset, type Augmentation, type Normalization } from './dataset';
import { decodeAll } from './decode-pool';
import { decodedCacheKey, readDecodedCache, writeDecodedCache, type SkippedImage } from './decoded-cache';
import { decodeImage, RESIZE_MODES, type DecodedImage, type ResizeMode } from './image-decode';
import { NormalizationSchema } from './normalization';
import type { SplitEntry } from './splits';

export { imageFolderEntries } from './image-folder';
export type { SkippedImage } from './decoded-cache';

/** Options of {@link loadImages}. */
export interface LoadImagesOptions {
  /** The working size: images are stored as `size × size` RGB (under `shorter`, their shorter side at `size`). */
  size: number;
  /**
   * `stretch`: resize to size × size (VTAB, as the reference: bicubic, aspect ratio not kept): the pixels
   * Pillow's `resize((size, size), BICUBIC)` gives.
   * `center-crop`: resize the shorter side to floor(size / 0.875) (256 for 224, bilinear), then crop the centre
   * (few-shot evaluation): the pixels torchvision's Resize(256) and CenterCrop(224) give.
   * `squash-crop`: resize to floor(size / 0.875) square (bicubic, aspect ratio not kept), then crop the centre:
   * NOAH's Resize((256, 256)) and CenterCrop(224), its evaluation of ImageNet-A and -R.
   * `cover`: resize the shorter side to size (bilinear) and keep the central square: torchvision's Resize(size) and
   * CenterCrop(size).
   * `shorter`: resize the shorter side to size (bilinear) and keep the whole image at its own size (few-shot and FGVC
   * training: store 256, then `augment: { crop: 224, flip: true }`, the reference's Resize(256), RandomCrop(224) and
   * flips): a dataset of images of their own sizes (see TensorDataset's `extents`).
   */
  resize?: ResizeMode;
  /** Training augmentation applied per batch by fit (see TensorDataset). */
  augment?: Augmentation;
  /**
   * A safetensors file caching the decoded pixels: reused when it was made from the same list (paths, labels,
   * file sizes and times) with the same options, rebuilt otherwise, so a second run starts at once.
   */
  cache?: string;
  normalization: Normalization;
  /** Images decoded at once (default: the number of CPUs). */
  concurrency?: number;
  /** `error` (default): a missing or corrupt image stops the load; `skip`: it is left out and reported. */
  onBadImage?: 'error' | 'skip';
  /** A progress bar on stderr while decoding: `auto` (default) shows it only on a TTY. */
  progress?: boolean | 'auto';
}

const LoadImagesOptionsSchema = z
  .object({
    size: z.number().int().min(1),
    resize: z.enum(RESIZE_MODES).optional(),
    augment: AugmentationSchema.optional(),
    cache: z.string().min(1).optional(),
    normalization: NormalizationSchema,
    concurrency: z.number().int().min(1).optional(),
    onBadImage: z.enum(['error', 'skip']).optional(),
    progress: z.union([z.boolean(), z.literal('auto')]).optional(),
  })
  .strict();

/**
 * Decodes the images of a split list with sharp (JPEG, PNG, WebP, ...; EXIF orientation applied, alpha dropped,
 * grey and CMYK to RGB) in parallel, into a dataset of uint8 pixels `[N, size, size, 3]` (under `resize: 'shorter'`,
 * images of their own sizes packed `[P, 3]` with their extents) converted to model input per batch. Options are validated first (a PaceOptionError naming the option). A missing, empty or corrupt image,
 * or a path that is not a regular file, is an error naming the file and its list line (or, with
 * `onBadImage: 'skip'`, left out and counted in `skipped`).
 */
export async function loadImages(
  entries: SplitEntry[],
  options: LoadImagesOptions,
): Promise<{ dataset: TensorDataset; skipped: SkippedImage[]; fromCache: boolean }> {
  const checked = parseOptions(LoadImagesOptionsSchema, options, 'options');
  const { size, resize = 'stretch', normalization, augment, cache } = checked;
  const key = cache ? decodedCacheKey(entries, { size, resize, onBadImage: checked.onBadImage }) : '';
  const cached = cache ? await readDecodedCache(cache, key) : undefined;
  if (cached) {
    const { images, labels, extents } = cached;
    const dataset = new TensorDataset(images, labels, { normalization, augment, extents });
    return { dataset, skipped: cached.skipped, fromCache: true };
  }
  const ownSizes = resize === 'shorter';
  // Images of one size go to their rows as they are decoded: all held in JavaScript buffers until the end as well,
  // a test split at 224 px would need twice its size (dSprites': 2 × 11 GiB).
  using rows = ownSizes ? undefined : new RowsTensorWriter(entries.length, [size, size, 3], 'uint8');
  const ownSized: DecodedImage[] = [];
  const { keptIndices, skipped, transient } = await decodeEntries(entries, checked, (index, image) =>
    rows ? rows.put(index, image.pixels) : (ownSized[index] = image),
  );
  if (keptIndices.length === 0) {
    // A wrong root is the usual cause: the first image says which.
    const first = skipped[0];
    const which = first
      ? `: all ${skipped.length} were skipped, the first '${first.path}' (list line ${first.line}): ${first.reason}`
      : '';
    throw new PaceInputError(`no image could be loaded${which}`);
  }
  const { images, extents } = rows
    ? { images: rows.finish(keptIndices), extents: undefined }
    : packed(keptIndices.map((index) => ownSized[index]));
  const labels = tensor(BigInt64Array.from(keptIndices, (index) => BigInt(entries[index].label)));
  const dataset = new TensorDataset(images, labels, { normalization, augment, extents });
  // An image skipped for a read that failed (EIO, a network file system's timeout, a permission) may read next
  // time with its file unchanged, so the cache, keyed by the files' stamps, would keep it out: none is written.
  if (cache && !transient) await writeDecodedCache(cache, key, { images, labels, extents, skipped });
  return { dataset, skipped, fromCache: false };
}

/**
 * Images of their own sizes, packed `[P, 3]`, with their extents `[N, 2]`: joined natively, as one JavaScript buffer
 * holds at most 4 GiB on Node 20.
 */
function packed(images: DecodedImage[]): { images: Tensor; extents: Tensor } {
  const pixelCount = images.reduce((sum, image) => sum + image.width * image.height, 0);
  const extents = BigInt64Array.from(images.flatMap((image) => [BigInt(image.height), BigInt(image.width)]));
  return {
    images: tensorFromPieces(
      images.map((image) => image.pixels),
      [pixelCount, 3],
      'uint8',
    ),
    extents: tensor(extents, [images.length, 2]),
  };
}

/**
 * Decodes every entry in parallel, each image handed to `keep` by its entry's index: the indices kept, in order,
 * and the skipped images by line.
 */
async function decodeEntries(
  entries: SplitEntry[],
  options: z.output<typeof LoadImagesOptionsSchema>,
  keep: (index: number, image: DecodedImage) => void,
): Promise<{ keptIndices: number[]; skipped: SkippedImage[]; transient: boolean }> {
  const { size, resize = 'stretch', onBadImage = 'error' } = options;
  const bar = progressBar(options.progress ?? 'auto');
  bar?.start(entries.length, 0);
  let attempts = 0;
  let failures;
  try {
    failures = await decodeAll(
      entries.length,
      async (index) => {
        try {
          return await decodeImage(entries[index].path, size, resize);
        } finally {
          bar?.update(Math.min(++attempts, entries.length));
        }
      },
      keep,
      { concurrency: options.concurrency ?? os.availableParallelism(), stopAtFailure: onBadImage === 'error' },
    );
  } finally {
    bar?.stop();
  }
  const skipped = failures.map(({ index, error }) => ({
    path: entries[index].path,
    line: entries[index].line,
    error,
    reason: (error as Error).message,
  }));
  if (onBadImage === 'error' && skipped.length > 0) {
    const [{ path, line, error, reason }] = skipped;
    const where = entries[failures[0].index].fromFolder ? '' : ` (list line ${line})`;
    throw withContext(error, `image '${path}'${where}: ${reason}`);
  }
  const failed = new Set(failures.map(({ index }) => index));
  return {
    keptIndices: entries.flatMap((_, index) => (failed.has(index) ? [] : [index])),
    skipped: skipped.map(({ path, line, reason }) => ({ path, line, reason })).sort(byLine),
    transient: failures.some(({ error }) => readFailed(error)),
  };
}

/** Whether a failure was the file system's, not the file's (a missing file is the file's: its stamp changes). */
function readFailed(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) && code !== 'ENOENT' && code !== 'ENOTDIR';
}

const byLine = (a: SkippedImage, b: SkippedImage) => a.line - b.line;

function progressBar(progress: boolean | 'auto'): SingleBar | undefined {
  const show = progress === true || (progress === 'auto' && process.stderr.isTTY === true);
  return show
    ? new SingleBar({ stream: process.stderr, format: 'decoding [{bar}] {value}/{total} images', fps: 5 })
    : undefined;
}
