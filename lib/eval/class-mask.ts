import { checkClassSubset } from '../data/domain-shift';
import { PaceInputError, PaceShapeError } from '../errors';

/** What {@link ClassMask.score} found on a batch. */
export interface MaskedScores {
  /** Rows whose restricted argmax is their label. */
  correct: number;
  /** The sum over rows of the cross-entropy over the subset (log-softmax of the subset's logits only). */
  lossSum: number;
  /** Each row's restricted argmax, as a class index of the full head. */
  predictions: Int32Array;
}

/**
 * A restriction of a classifier's logits to a subset of its classes, as ImageNet-A and -R are evaluated: the
 * prediction is the argmax over the subset's logits only (the first on ties, as torch's argmax), and the loss
 * the cross-entropy of the softmax over the subset. Without a subset every class takes part.
 */
export class ClassMask {
  /** The head's class count. */
  readonly numClasses: number;
  /** The classes that take part, ascending. */
  readonly classes: readonly number[];
  readonly #members: Int32Array;
  readonly #inside: Uint8Array;

  constructor(numClasses: number, classes?: readonly number[]) {
    this.numClasses = numClasses;
    this.classes = classes
      ? checkClassSubset(classes, numClasses, 'class mask')
      : Array.from({ length: numClasses }, (_, i) => i);
    this.#members = Int32Array.from(this.classes);
    this.#inside = new Uint8Array(numClasses);
    for (const c of this.classes) this.#inside[c] = 1;
  }

  /** Whether class `c` takes part. */
  contains(c: number): boolean {
    return Number.isInteger(c) && c >= 0 && c < this.numClasses && this.#inside[c] === 1;
  }

  /**
   * Scores logits `[rows × numClasses]` (row-major) against their labels. A label outside the subset is an
   * error: such a sample could never be predicted right. `firstRow` numbers rows in messages.
   */
  score(logits: Float32Array, labels: ArrayLike<number>, firstRow = 0): MaskedScores {
    const k = this.numClasses;
    const rows = labels.length;
    if (logits.length !== rows * k) {
      throw new PaceShapeError(`expected ${rows} rows of ${k} logits (${rows * k} values), got ${logits.length}`);
    }
    const members = this.#members;
    const predictions = new Int32Array(rows);
    let correct = 0;
    let lossSum = 0;
    for (let r = 0; r < rows; r++) {
      const label = labels[r];
      if (!this.contains(label)) {
        throw new PaceInputError(
          `sample ${firstRow + r}: label ${label} is not among the ${members.length} classes of the mask`,
        );
      }
      const row = r * k;
      let best = members[0];
      let max = logits[row + best];
      for (let i = 1; i < members.length; i++) {
        const v = logits[row + members[i]];
        if (v > max || (Number.isNaN(v) && !Number.isNaN(max))) {
          max = v;
          best = members[i];
        }
      }
      let sum = 0;
      for (let i = 0; i < members.length; i++) sum += Math.exp(logits[row + members[i]] - max);
      lossSum += Math.log(sum) + max - logits[row + label];
      predictions[r] = best;
      if (best === label) correct++;
    }
    return { correct, lossSum, predictions };
  }
}
