import { z } from 'zod';

import { parseOptions } from '../options';

const channelValues = (check: z.ZodNumber) => z.array(check).length(3, { message: 'needs one value per channel (3)' });

/** Per-channel mean and std: three finite numbers each, every std above 0 (a zero std divides by zero). */
export const NormalizationSchema = z.object({
  mean: channelValues(z.number({ message: 'must be a finite number' })),
  std: channelValues(z.number({ message: 'must be a finite number' }).positive({ message: 'must be above 0' })),
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
