import type { Tensor } from '../../lib';

/**
 * The fixtures' tolerance measure: max |ours − ref| / (max |ref| + 1e-6), after checking the shapes agree.
 */
export function relativeError(ours: Tensor, reference: Tensor): number {
  expect(ours.shape).toEqual(reference.shape);
  return maxRelativeError(ours.toFloat32Array(), reference.toFloat32Array());
}

/** The same measure over plain arrays of equal length (no jest needed: the device checks use it too). */
export function maxRelativeError(a: Float32Array, b: Float32Array): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / (maxRef + 1e-6);
}
