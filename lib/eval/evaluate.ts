import { z } from 'zod';

import { TensorDataset } from '../data/dataset';
import { normalizationOf } from '../data/dataset-fingerprint';
import { checkLabelsBelow } from '../data/labels';
import { PaceInputError, PaceOptionError } from '../errors';
import type { Model } from '../models/model';
import { parseOptions } from '../options';
import { nativeAddon } from '../native';
import { handleOf, Tensor } from '../tensor';

/** Accuracy figures of an evaluation ({@link evaluateDataset}, `Trainer.evaluate`). */
export interface EvaluationReport {
  samples: number;
  /** The classes that took part in the argmax and softmax: the head's, or the subset's. */
  classes: number;
  /** Top-1 accuracy. */
  accuracy: number;
  /** Top-5 accuracy (with at least 5 classes taking part). */
  top5?: number;
  /** Mean cross-entropy (of the softmax over the classes taking part). */
  loss: number;
  /** Accuracy of each class (NaN for a class with no samples). */
  perClassAccuracy: number[];
  /** confusion[true][predicted] counts. */
  confusion: number[][];
}

export const EvaluateOptionsSchema = z
  .object({
    batchSize: z.number().int().min(1).default(64),
    /**
     * Only these classes of the head take part in the argmax, top-5 and softmax (ImageNet-A's and -R's 200 of
     * ImageNet's 1,000); every label must be one of them. Default: all.
     */
    classes: z.array(z.number().int().min(0)).min(1).optional(),
    precision: z.enum(['fp32', 'tf32', 'bf16']).default('fp32'),
    /**
     * Stops the evaluation before its next batch: the call rejects with the signal's reason at once, also while it
     * waits behind other calls on the model. A data-parallel trainer's evaluation is collective and runs to its end.
     */
    signal: z.custom<AbortSignal>((value) => value instanceof AbortSignal, 'expected an AbortSignal').optional(),
  })
  .strict();

export type EvaluateOptions = z.input<typeof EvaluateOptionsSchema>;

/**
 * Top-1 (and top-5) accuracy, loss, per-class accuracy and the confusion matrix of a model on a dataset, in
 * evaluation mode, computed natively in batches (uint8 images converted with the dataset's normalisation).
 * `sharded` (for data-parallel trainers) makes it collective across the current distributed group.
 */
export async function evaluateDataset(
  model: Model,
  dataset: TensorDataset,
  options: EvaluateOptions = {},
  sharded = false,
): Promise<EvaluationReport> {
  const o = parseOptions(EvaluateOptionsSchema, options, 'options');
  if (!(dataset instanceof TensorDataset)) {
    throw new PaceOptionError(`dataset: expected a TensorDataset, got ${dataset === null ? 'null' : typeof dataset}`);
  }
  if (dataset.length === 0) throw new PaceInputError('dataset: it is empty; there is nothing to evaluate');
  // Named here with the sample (the native check says only "targets"); a headless model is refused natively.
  if (model.spec.numClasses > 0) checkLabelsBelow(dataset.labels.toBigInt64Array(), model.spec.numClasses, 'dataset');
  const normalization = normalizationOf(dataset);
  const { signal: given, ...native } = o;
  const signal = sharded ? undefined : given; // every rank must take part in a collective evaluation to its end
  signal?.throwIfAborted();
  const stop = signal && new (nativeAddon().NativeStopFlag)();
  // An abort rejects at once, also while the evaluation waits behind other calls on the model; the native loop,
  // stopped, ends at its next batch (or as soon as its turn comes).
  let rejectAborted: (reason: unknown) => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => (rejectAborted = reject));
  const onAbort = () => {
    stop?.stop();
    rejectAborted(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort);
  let result: Awaited<ReturnType<typeof model.nativeHandle.evaluate>>;
  try {
    const evaluation = model.nativeHandle.evaluate(handleOf(dataset.images), handleOf(dataset.labels), {
      ...native,
      normalization,
      ...(dataset.extents && { extents: handleOf(dataset.extents) }),
      sharded,
      ...(stop && { stop }),
    });
    evaluation.catch(() => undefined); // what it does after an abort has rejected the call is nobody's to hear
    result = await (signal ? Promise.race([evaluation, aborted]) : evaluation);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (result.stopped) throw signal!.reason;
  using confusionTensor = new Tensor(result.confusion);
  const classes = confusionTensor.shape[0];
  const flat = confusionTensor.toFloat64Array();
  const confusion = Array.from({ length: classes }, (_, i) =>
    Array.from(flat.subarray(i * classes, (i + 1) * classes)),
  );
  return {
    samples: result.samples,
    classes: result.classes,
    accuracy: result.top1,
    top5: result.top5,
    loss: result.loss,
    perClassAccuracy: confusion.map((row, i) => row[i] / row.reduce((a, b) => a + b, 0)),
    confusion,
  };
}
