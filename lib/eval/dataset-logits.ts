import type { TensorDataset } from '../data/dataset';
import { prepareImages } from '../data/prepare';
import { PaceOptionError } from '../errors';
import type { ForwardOptions, Model } from '../models/model';
import { tensor, type Tensor } from '../tensor';

/** One batch of a dataset's logits. */
export interface LogitBatch {
  /** `[rows × classes]` row-major, float32. */
  logits: Float32Array;
  classes: number;
  /** The batch's labels. */
  labels: Int32Array;
  /** The index of the batch's first sample in the dataset. */
  start: number;
}

/**
 * Runs the model's forward over a dataset in batches (uint8 pixels converted with the dataset's normalisation
 * to the model's size, float images as they are) and hands each batch's logits to `visit` in order. The
 * model's mode is left as it is: call `model.eval()` first for evaluation.
 */
export async function forEachLogitBatch(
  model: Model,
  dataset: TensorDataset,
  options: { batchSize: number; precision?: ForwardOptions['precision'] },
  visit: (batch: LogitBatch) => void | Promise<void>,
): Promise<void> {
  const { batchSize, precision } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new PaceOptionError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  const { images } = dataset;
  const [count, ...sample] = images.shape;
  const perSample = sample.reduce((n, d) => n * d, 1);
  const pixels = images.view();
  const labels = Int32Array.from(dataset.labels.toBigInt64Array(), Number);
  for (let start = 0; start < count; start += batchSize) {
    const rows = Math.min(batchSize, count - start);
    const slice = pixels.subarray(start * perSample, (start + rows) * perSample);
    const disposables: Tensor[] = [];
    try {
      const batch = tensor(slice, [rows, ...sample], { dtype: images.dtype });
      disposables.push(batch);
      let input = batch;
      if (dataset.normalization) {
        input = await prepareImages(batch, { size: model.spec.imgSize, ...dataset.normalization });
        disposables.push(input);
      }
      const output = await model.forward(input, { precision });
      disposables.push(output);
      await visit({
        logits: output.toFloat32Array(),
        classes: output.shape[1],
        labels: labels.subarray(start, start + rows),
        start,
      });
    } finally {
      for (const t of disposables) t.dispose();
    }
  }
}
