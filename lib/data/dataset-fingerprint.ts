import { handleOf } from '../tensor';
import type { TensorDataset } from './dataset';

/**
 * What tells a dataset's contents from another's of the same shape, read natively without copying it (each
 * tensor's fingerprint: native/core/tensor/fingerprint.h).
 */
export function datasetFingerprint(set: TensorDataset): { images: string; labels: string; extents?: string } {
  return {
    images: handleOf(set.images).fingerprint(),
    labels: handleOf(set.labels).fingerprint(),
    ...(set.extents && { extents: handleOf(set.extents).fingerprint() }),
  };
}
