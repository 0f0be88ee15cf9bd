import { z } from 'zod';

import { parseOptions } from '../options';

const meanRange = { message: 'must be from -1 to 2 (pixels are scaled to [0, 1] before the mean is taken off)' };
const stdRange = { message: 'must be from 1e-3 to 10 (each pixel, scaled to [0, 1], is divided by it)' };

/**
 * A channel's mean, in the units of pixels scaled to [0, 1]: one far outside them is no normalisation (a mean given
 * in 0–255 units, say).
 */
export const ChannelMeanSchema = z.number({ message: 'must be a finite number' }).min(-1, meanRange).max(2, meanRange);

/** A channel's std, in the same units: each pixel is divided by it, so 0 divides by zero and a tiny one overflows. */
export const ChannelStdSchema = z.number({ message: 'must be a finite number' }).min(1e-3, stdRange).max(10, stdRange);

export const channelValues = <T extends z.ZodType>(check: T) =>
  z.array(check).length(3, { message: 'needs one value per channel (3)' });

/** Per-channel mean and std: three numbers each, in the units of pixels scaled to [0, 1]. */
export const NormalizationSchema = z.object({
  mean: channelValues(ChannelMeanSchema),
  std: channelValues(ChannelStdSchema),
});

/** Per-channel mean and std applied after scaling pixels to [0, 1] (a model's `preprocessing` has them). */
export interface Normalization {
  mean: [number, number, number] | readonly number[];
  std: [number, number, number] | readonly number[];
}

/** A copy of `normalization` once valid; a PaceOptionError naming the field (`normalization.std[1]`) otherwise. */
export function checkNormalization(
  normalization: unknown,
  what = 'normalization',
): z.output<typeof NormalizationSchema> {
  return parseOptions(NormalizationSchema, normalization, what);
}
