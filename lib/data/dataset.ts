import type { Tensor } from '../tensor';

/**
 * Images and labels already in tensors: images float `[N, 3, S, S]` (normalised as the model expects),
 * labels int64 `[N]`. Batches are assembled natively from it, with no per-image JavaScript work.
 */
export class TensorDataset {
  readonly images: Tensor;
  readonly labels: Tensor;

  constructor(images: Tensor, labels: Tensor) {
    const shape = images.shape;
    if (shape.length !== 4 || shape[1] !== 3 || !['float32', 'float64', 'float16', 'bfloat16'].includes(images.dtype)) {
      throw new TypeError(`images must be a float tensor [N, 3, S, S]; got ${images.dtype} [${shape.join(',')}]`);
    }
    if (labels.dtype !== 'int64' || labels.shape.length !== 1) {
      throw new TypeError(`labels must be an int64 tensor [N]; got ${labels.dtype} [${labels.shape.join(',')}]`);
    }
    if (labels.shape[0] !== shape[0]) {
      throw new RangeError(`the dataset has ${shape[0]} images but ${labels.shape[0]} labels`);
    }
    this.images = images;
    this.labels = labels;
  }

  /** The number of samples. */
  get length(): number {
    return this.labels.shape[0];
  }
}
