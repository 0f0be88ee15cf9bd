import { withContext } from '../error-context';
import { PaceFileError } from '../errors';
import { loadTensors } from '../safetensors';
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
