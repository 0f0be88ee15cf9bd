import type { Tensor } from '../../lib';

/**
 * The fixtures' tolerance measure: max |ours − ref| / (max |ref| + 1e-6), after checking the shapes agree.
 */
export function relativeError(ours: Tensor, reference: Tensor): number {
  expect(ours.shape).toEqual(reference.shape);
  const a = ours.toFloat32Array();
  const b = reference.toFloat32Array();
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / (maxRef + 1e-6);
}
