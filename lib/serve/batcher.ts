import { PaceDivergedError, PaceStateError } from '../errors';
import type { Model } from '../models/model';
import type { Normalization } from '../data/normalization';
import { prepareImages } from '../data/prepare';
import { nativeAddon } from '../native';
import { tensor } from '../tensor';
import { HttpError } from './http-error';
import { softmax } from './ranking';

interface Pending {
  pixels: Buffer;
  resolve: (probabilities: Float32Array) => void;
  reject: (error: Error) => void;
  /** Withdrawn by its caller (a timeout, a closed connection) before its batch started: skipped. */
  cancelled: boolean;
  /** Its batch has started: it runs to the end. */
  started: boolean;
}

/** A submitted prediction: its result, and a way to withdraw it while its batch has not started. */
export interface Submission {
  result: Promise<Float32Array>;
  cancel(): void;
}

/** Throws when `model` is in training mode, in which its answers would vary (stochastic depth). */
export function refuseTrainingMode(model: Model): void {
  if (model.training) {
    throw new PaceStateError(
      'the model is in training mode (stochastic depth on, so answers vary): call model.eval() before serving it',
    );
  }
}

/** How many of the latest batch sizes a server keeps in `batches`. */
export const RECORDED_BATCHES = 10_000;

/**
 * Collects concurrent requests and runs them as one forward pass: a batch starts when it is full or when its
 * first request has waited `batchWindowMs`. Batches run one after another, so the model's work holds one
 * worker thread at a time. At most `maxPending` requests wait or run at once (more are refused with a 503), and
 * a request withdrawn before its batch starts is dropped, so abandoned requests cost no forward.
 */
export class Batcher {
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = Promise.resolve();
  #draining = false;
  #pending = 0;
  /** The sizes of the batches run, the most recent {@link RECORDED_BATCHES} (a server running for weeks keeps no more). */
  readonly batches: number[] = [];

  constructor(
    private readonly options: {
      model: Model;
      /** The mean and std the uploads are normalised by. */
      normalization: Normalization;
      maxBatch: number;
      batchWindowMs: number;
      maxPending: number;
      retryAfterSeconds: number;
      /** Idle this long, the forwards' cached CPU memory is released (0: never). */
      idleReleaseMs: number;
      /** How many of the latest batch sizes `batches` keeps (default {@link RECORDED_BATCHES}). */
      recordedBatches?: number;
    },
  ) {}

  #idleTimer: NodeJS.Timeout | undefined;

  /** Class probabilities for one image of the model's size (RGB uint8, HWC). */
  submit(pixels: Buffer): Submission {
    this.refuseWhenFull();
    clearTimeout(this.#idleTimer);
    this.#pending += 1;
    let entry!: Pending;
    const result = new Promise<Float32Array>((resolve, reject) => {
      entry = { pixels, resolve, reject, cancelled: false, started: false };
      this.#queue.push(entry);
      if (this.#draining || this.#queue.length >= this.options.maxBatch) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.options.batchWindowMs);
    }).finally(() => {
      this.#pending -= 1;
      if (this.#pending === 0 && this.options.idleReleaseMs > 0) {
        clearTimeout(this.#idleTimer);
        this.#idleTimer = setTimeout(() => nativeAddon().releaseCachedMemory(), this.options.idleReleaseMs).unref();
      }
    });
    result.catch(() => undefined); // a withdrawn request's rejection is its caller's to see, not an unhandled one
    return {
      result,
      cancel: () => {
        if (entry.started || entry.cancelled) return;
        entry.cancelled = true;
        const at = this.#queue.indexOf(entry);
        if (at >= 0) this.#queue.splice(at, 1);
        entry.reject(new HttpError(499, 'withdrawn before its batch started'));
      },
    };
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

  async #run(waiting: Pending[]): Promise<void> {
    const batch = waiting.filter((pending) => !pending.cancelled);
    if (batch.length === 0) return;
    for (const pending of batch) pending.started = true;
    const { model, normalization } = this.options;
    const size = model.spec.imgSize;
    try {
      model.fitLock.check('a prediction'); // (a fit's training mode is the fit's: busy, not wrong)
      refuseTrainingMode(model);
      const pixels = Buffer.concat(batch.map((p) => p.pixels));
      using images = tensor(pixels, [batch.length, size, size, 3], { dtype: 'uint8' });
      using input = await prepareImages(images, { size, ...normalization });
      using logits = await model.forward(input);
      const classes = logits.shape[1];
      const values = logits.toFloat32Array();
      if (!values.every(Number.isFinite)) {
        throw new PaceDivergedError(`the model's logits for a batch of ${batch.length} are not finite`);
      }
      this.batches.push(batch.length);
      if (this.batches.length > (this.options.recordedBatches ?? RECORDED_BATCHES)) this.batches.shift();
      batch.forEach((pending, i) => pending.resolve(softmax(values.subarray(i * classes, (i + 1) * classes))));
    } catch (error) {
      for (const pending of batch) pending.reject(error as Error);
    }
  }

  /** Throws the 503 a submission would get now (before spending a decode on a request that cannot wait). */
  refuseWhenFull(): void {
    if (this.#pending >= this.options.maxPending) {
      throw new HttpError(503, `${this.#pending} predictions are waiting or running; try again later`, {
        'retry-after': String(this.options.retryAfterSeconds),
      });
    }
  }

  /** Requests submitted and not yet answered: waiting for their batch, or in one that runs or waits to. */
  get queued(): number {
    return this.#pending;
  }

  /** Runs what is queued now, without waiting out the batch window, and every later request at once. */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#flush();
    await this.#running;
    clearTimeout(this.#idleTimer);
  }
}
