import type { Model } from '../models/model';
import { prepareImages } from '../data/prepare';
import { tensor } from '../tensor';

interface Pending {
  pixels: Buffer;
  resolve: (probabilities: Float32Array) => void;
  reject: (error: Error) => void;
}

/** Softmax in float64 of one row of logits. */
function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return Float32Array.from(exps, (v) => v / sum);
}

/**
 * Collects concurrent requests and runs them as one forward pass: a batch starts when it is full or when its
 * first request has waited `batchWindowMs`. Batches run one after another, so the model's work holds one
 * worker thread at a time.
 */
export class Batcher {
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = Promise.resolve();
  #draining = false;
  /** The size of every batch run so far. */
  readonly batches: number[] = [];

  constructor(private readonly options: { model: Model; maxBatch: number; batchWindowMs: number }) {}

  /** Class probabilities for one image of the model's size (RGB uint8, HWC). */
  submit(pixels: Buffer): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ pixels, resolve, reject });
      if (this.#draining || this.#queue.length >= this.options.maxBatch) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.options.batchWindowMs);
    });
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    if (this.#queue.length > 0) {
      if (this.#draining) this.#flush();
      else this.#timer = setTimeout(() => this.#flush(), this.options.batchWindowMs);
    }
    this.#running = this.#running.then(() => this.#run(batch));
  }

  async #run(batch: Pending[]): Promise<void> {
    const { model } = this.options;
    const size = model.spec.imgSize;
    try {
      const pixels = Buffer.concat(batch.map((p) => p.pixels));
      using images = tensor(pixels, [batch.length, size, size, 3], { dtype: 'uint8' });
      using input = await prepareImages(images, { size, ...model.preprocessing });
      using logits = await model.forward(input);
      const classes = logits.shape[1];
      const values = logits.toFloat32Array();
      this.batches.push(batch.length);
      batch.forEach((pending, i) => pending.resolve(softmax(values.subarray(i * classes, (i + 1) * classes))));
    } catch (error) {
      for (const pending of batch) pending.reject(error as Error);
    }
  }

  /** Requests waiting for their batch to start. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Runs what is queued now, without waiting out the batch window, and every later request at once. */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#flush();
    await this.#running;
  }
}
