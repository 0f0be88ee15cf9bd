import { withContext } from '../error-context';
import { PaceFileError } from '../errors';
import fs from 'node:fs';

import { loadTensors, readTensorHeaderSync } from '../safetensors';
import { TensorDataset } from './dataset';
import { checkLabelsBelow } from './labels';
import type { Normalization } from './normalization';

/**
 * A dataset stored as one safetensors file with `images` and `labels` (int64 `[N]`), e.g. written with
 * `saveTensors(path, { images, labels })`: float images `[N, 3, S, S]`, normalised; or uint8 pixels `[N, H, W(, C)]`
 * (a decoded-image cache, for one), which need `normalization`; or, with `extents` `[N, 2]`, uint8 images of their
 * own sizes packed `[P, C]` (a cache of training images stored whole). With `numClasses`, a label outside
 * 0..numClasses-1 is refused naming the file.
 */
export async function loadTensorDataset(
  path: string,
  options: { normalization?: Normalization; numClasses?: number } = {},
): Promise<TensorDataset> {
  const { tensors } = await loadTensors(path);
  const { images, labels, extents, ...rest } = tensors;
  const extra = Object.keys(rest);
  try {
    if (!images || !labels) throw new PaceFileError(`dataset file '${path}' needs tensors 'images' and 'labels'`);
    if (extra.length > 0) throw new PaceFileError(`dataset file '${path}' has unexpected tensors: ${extra.join(', ')}`);
    const normalization = images.dtype === 'uint8' ? options.normalization : undefined;
    const dataset = new TensorDataset(images, labels, { normalization, ...(extents && { extents }) });
    if (options.numClasses !== undefined) {
      checkLabelsBelow(labels.toBigInt64Array(), options.numClasses, `dataset file '${path}'`);
    }
    return dataset;
  } catch (error) {
    for (const t of Object.values(tensors)) t.dispose();
    throw error instanceof Error && !error.message.includes(path)
      ? withContext(error, `dataset file '${path}': ${error.message}`)
      : error;
  }
}

/**
 * The shortest side among a dataset file's packed images (its int64 `extents`, read alone), or undefined for a file
 * of images of one size or one that cannot be read: what the file's images were stored at (`loadImages`' `shorter`).
 */
export function packedShorterSide(path: string): number | undefined {
  let bytes: Buffer;
  try {
    const header = readTensorHeaderSync(path);
    const extents = header.entries.find((entry) => entry.name === 'extents');
    if (!extents || extents.dtype !== 'int64' || extents.shape.length !== 2 || extents.shape[0] < 1) return undefined;
    const [from, to] = extents.dataOffsets;
    bytes = Buffer.alloc(to - from);
    const handle = fs.openSync(path, 'r');
    try {
      if (fs.readSync(handle, bytes, 0, bytes.length, header.dataStart + from) !== bytes.length) return undefined;
    } finally {
      fs.closeSync(handle);
    }
  } catch {
    return undefined; // not readable here: the load names why
  }
  const sides = new BigInt64Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 8));
  let shortest = Infinity;
  for (const side of sides) {
    // an image side no file of images has: the load refuses the file and says why; none is made up here
    if (side < 1n || side > 2n ** 31n) return undefined;
    shortest = Math.min(shortest, Number(side));
  }
  return Number.isFinite(shortest) ? shortest : undefined;
}
