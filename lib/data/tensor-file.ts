import { withContext } from '../error-context';
import { PaceFileError } from '../errors';
import { loadTensors } from '../safetensors';
import { TensorDataset } from './dataset';

/**
 * A dataset stored as one safetensors file with `images` (float `[N, 3, S, S]`, normalised) and `labels`
 * (int64 `[N]`), e.g. written with `saveTensors(path, { images, labels })`.
 */
export async function loadTensorDataset(path: string): Promise<TensorDataset> {
  const { tensors } = await loadTensors(path);
  const { images, labels, ...rest } = tensors;
  const extra = Object.keys(rest);
  try {
    if (!images || !labels) throw new PaceFileError(`dataset file '${path}' needs tensors 'images' and 'labels'`);
    if (extra.length > 0) throw new PaceFileError(`dataset file '${path}' has unexpected tensors: ${extra.join(', ')}`);
    return new TensorDataset(images, labels);
  } catch (error) {
    for (const t of Object.values(tensors)) t.dispose();
    throw error instanceof Error && !error.message.includes(path)
      ? withContext(error, `dataset file '${path}': ${error.message}`)
      : error;
  }
}
