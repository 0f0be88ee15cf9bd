import { handleOf } from '../tensor';
import type { TensorDataset } from './dataset';

/**
 * What tells a dataset's contents from another's of the same shape, read natively without copying it (each
 * tensor's fingerprint, native/core/tensor/fingerprint.h: the images' by windows past 1 MiB; the labels and
 * extents whole, a relabelled sample changing it).
 */
export function datasetFingerprint(set: TensorDataset): { images: string; labels: string; extents?: string } {
  return {
    images: handleOf(set.images).fingerprint(),
    labels: handleOf(set.labels).fingerprint(true),
    ...(set.extents && { extents: handleOf(set.extents).fingerprint(true) }),
  };
}
