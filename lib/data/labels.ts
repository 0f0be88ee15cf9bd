import { PaceInputError } from '../errors';

/**
 * Refuses labels outside 0..numClasses-1, naming the first: `<where>: label 9 at index 37 is not below 4`
 * (the model would find it only mid-training, without naming the file).
 */
export function checkLabelsBelow(labels: ArrayLike<number | bigint>, numClasses: number, where: string): void {
  for (let i = 0; i < labels.length; i++) {
    const label = Number(labels[i]);
    if (label < 0 || label >= numClasses) {
      throw new PaceInputError(
        label < 0
          ? `${where}: label ${label} at index ${i} is negative`
          : `${where}: label ${label} at index ${i} is not below ${numClasses}`,
      );
    }
  }
}
