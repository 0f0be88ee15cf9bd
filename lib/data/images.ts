import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { SingleBar } from 'cli-progress';
import sharp from 'sharp';

import { withContext } from '../error-context';
import { PaceFileError, PaceInputError } from '../errors';
import { loadTensors, readTensorHeader, saveTensors } from '../safetensors';
import { tensor, type Tensor } from '../tensor';
import { TensorDataset, type Augmentation, type Normalization } from './dataset';
import type { SplitEntry } from './splits';

/** Options of {@link loadImages}. */
export interface LoadImagesOptions {
  /** The working size: images are stored as `size × size` RGB. */
  size: number;
  /**
   * `stretch`: resize to size × size (VTAB, as the reference: bicubic, aspect ratio not kept).
   * `center-crop`: resize the shorter side to floor(size / 0.875) (256 for 224), then crop the centre (few-shot evaluation).
   * `cover`: resize the shorter side to size and keep the central square (few-shot training: store 256, then
   * `augment: { crop: 224, flip: true }`).
   */
  resize?: 'stretch' | 'center-crop' | 'cover';
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

/** An image that could not be used, and why. */
export interface SkippedImage {
  path: string;
  line: number;
  reason: string;
}

async function decode(file: string, size: number, mode: 'stretch' | 'center-crop' | 'cover'): Promise<Buffer> {
  if (fs.statSync(file).size === 0) throw new PaceFileError('the file is empty');
  // rotate() applies the EXIF orientation; alpha is dropped, grey and CMYK become sRGB.
  const oriented = sharp(file, { failOn: 'error' }).rotate().removeAlpha().toColourspace('srgb');
  if (mode === 'stretch') {
    return oriented.resize(size, size, { fit: 'fill', kernel: 'cubic' }).raw().toBuffer();
  }
  if (mode === 'cover') {
    return oriented.resize(size, size, { fit: 'cover', position: 'centre', kernel: 'cubic' }).raw().toBuffer();
  }
  const shorter = Math.floor(size / 0.875);
  const { data, info } = await oriented
    .resize(shorter, shorter, { fit: 'outside', kernel: 'cubic' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
    .extract({
      left: Math.floor((info.width - size) / 2),
      top: Math.floor((info.height - size) / 2),
      width: size,
      height: size,
    })
    .raw()
    .toBuffer();
}

/**
 * Decodes the images of a split list with sharp (JPEG, PNG, WebP, ...; EXIF orientation applied, alpha dropped,
 * grey and CMYK to RGB) in parallel, into a dataset of uint8 pixels `[N, size, size, 3]` converted to model input
 * per batch. A missing, empty or corrupt image is an error naming the file and its list line (or, with
 * `onBadImage: 'skip'`, left out and counted in `skipped`).
 */
export async function loadImages(
  entries: SplitEntry[],
  options: LoadImagesOptions,
): Promise<{ dataset: TensorDataset; skipped: SkippedImage[]; fromCache: boolean }> {
  const { size, resize = 'stretch', normalization, onBadImage = 'error' } = options;
  const key = options.cache ? cacheKey(entries, options) : '';
  if (options.cache) {
    const cached = await readCache(options.cache, key);
    if (cached) {
      return {
        dataset: new TensorDataset(cached.images, cached.labels, { normalization, augment: options.augment }),
        skipped: cached.skipped,
        fromCache: true,
      };
    }
  }
  const concurrency = Math.max(1, options.concurrency ?? os.availableParallelism());
  const pixels: (Buffer | undefined)[] = new Array(entries.length);
  const progress = options.progress ?? 'auto';
  const bar =
    progress === true || (progress === 'auto' && process.stderr.isTTY === true)
      ? new SingleBar({ stream: process.stderr, format: 'decoding [{bar}] {value}/{total} images', fps: 5 })
      : undefined;
  bar?.start(entries.length, 0);
  let done = 0;
  const skipped: SkippedImage[] = [];
  let next = 0;
  let failed = false; // after the first error (onBadImage 'error') the other workers stop too
  const worker = async () => {
    while (next < entries.length && !failed) {
      const index = next++;
      const entry = entries[index];
      try {
        const data = await decode(entry.path, size, resize);
        if (data.length !== size * size * 3)
          throw new PaceFileError(`decoded to ${data.length} bytes, not ${size}x${size} RGB`);
        pixels[index] = data;
      } catch (error) {
        const reason = (error as Error).message;
        if (onBadImage === 'error') {
          failed = true;
          throw withContext(error, `image '${entry.path}' (list line ${entry.line}): ${reason}`);
        }
        skipped.push({ path: entry.path, line: entry.line, reason });
      }
      bar?.update(++done);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
  } finally {
    bar?.stop();
  }

  const kept = entries.flatMap((entry, i) => (pixels[i] ? [{ entry, data: pixels[i] as Buffer }] : []));
  if (kept.length === 0) throw new PaceInputError('no image could be loaded');
  const all = new Uint8Array(kept.length * size * size * 3);
  kept.forEach(({ data }, i) => all.set(data, i * size * size * 3));
  const dataset = new TensorDataset(
    tensor(all, [kept.length, size, size, 3]),
    tensor(BigInt64Array.from(kept, ({ entry }) => BigInt(entry.label))),
    { normalization, augment: options.augment },
  );
  skipped.sort((a, b) => a.line - b.line);
  if (options.cache) {
    // The decoded images are the result; a cache that cannot be written only costs the next run time.
    try {
      fs.mkdirSync(path.dirname(options.cache), { recursive: true });
      await saveTensors(
        options.cache,
        { images: dataset.images, labels: dataset.labels },
        { metadata: { [CACHE_KEY]: key, skipped: JSON.stringify(skipped) } },
      );
    } catch (error) {
      process.emitWarning(`pace-peft: could not write the decoded-image cache: ${(error as Error).message}`);
    }
  }
  return { dataset, skipped, fromCache: false };
}

const CACHE_KEY = 'pace_peft.decoded_cache_key';

/** What the decoded pixels depend on: every file's path, label, size and time, and the decoding options. */
function cacheKey(entries: SplitEntry[], options: LoadImagesOptions): string {
  const hash = createHash('sha256');
  hash.update(
    JSON.stringify({ version: 1, size: options.size, resize: options.resize ?? 'stretch', bad: options.onBadImage }),
  );
  for (const entry of entries) {
    let stamp = 'missing';
    try {
      const stat = fs.statSync(entry.path);
      stamp = `${stat.size}:${stat.mtimeMs}`;
    } catch {
      // a missing file is part of the key: it either fails the load or is skipped
    }
    hash.update(`${entry.path}\0${entry.label}\0${stamp}\n`);
  }
  return hash.digest('hex');
}

async function readCache(
  file: string,
  key: string,
): Promise<{ images: Tensor; labels: Tensor; skipped: SkippedImage[] } | undefined> {
  if (!fs.existsSync(file)) return undefined;
  try {
    const header = await readTensorHeader(file);
    if (header.metadata?.[CACHE_KEY] !== key) return undefined;
    const { tensors, metadata } = await loadTensors(file);
    return { images: tensors.images, labels: tensors.labels, skipped: JSON.parse(metadata?.skipped ?? '[]') };
  } catch {
    return undefined; // a damaged cache is rebuilt
  }
}

const imageExtensions = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/**
 * A plain image folder: one subfolder per class (classes sorted by name, as torchvision's ImageFolder), image
 * files inside. Symbolic links that lead outside the root are refused.
 */
export function imageFolderEntries(root: string): { entries: SplitEntry[]; classes: string[] } {
  const base = fs.realpathSync(root);
  const classes = fs
    .readdirSync(base, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  if (classes.length === 0) throw new PaceInputError(`image folder '${root}' has no class subfolders`);
  const entries: SplitEntry[] = [];
  classes.forEach((name, label) => {
    const dir = path.join(base, name);
    for (const file of fs.readdirSync(dir).sort()) {
      if (!imageExtensions.has(path.extname(file).toLowerCase())) continue;
      const real = fs.realpathSync(path.join(dir, file));
      const inside = path.relative(base, real);
      if (inside === '..' || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
        throw new PaceInputError(`image folder '${root}': '${name}/${file}' links outside the folder (${real})`);
      }
      entries.push({ path: real, label, line: entries.length + 1 });
    }
  });
  return { entries, classes };
}
