import { handleOf } from '../tensor';
import type { TensorDataset } from './dataset';

/** A dataset's normalisation as plain arrays (as the native layer takes it and a config records it), if it has one. */
export function normalizationOf(dataset: TensorDataset): { mean: number[]; std: number[] } | undefined {
  return dataset.normalization && { mean: [...dataset.normalization.mean], std: [...dataset.normalization.std] };
}

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
