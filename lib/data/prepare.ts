import { z } from 'zod';

import { PaceInputError, PaceOptionError } from '../errors';
import { nativeAddon } from '../native';
import { parseOptions } from '../options';
import { handleOf, Tensor } from '../tensor';
import { checkNormalization, type Normalization } from './normalization';

/** The largest side images are resized to (the native side's kMaxImageSize: 16384² is 3 GiB per image). */
export const MAX_IMAGE_SIZE = 16384;

/**
 * Decoded uint8 pixels `[N, H, W]` or `[N, H, W, C]` as model input: float `[N, 3, size, size]`, grey replicated
 * to RGB, alpha dropped, resized with antialiased bicubic when needed, normalised. Runs off the JS thread. A mean or
 * std that is not three finite numbers, or a std of 0 or below, is a PaceOptionError naming it (`options.std[0]`).
 */
export async function prepareImages(images: Tensor, options: { size: number } & Normalization): Promise<Tensor> {
  const { size, mean, std } = options;
  if (!Number.isInteger(size) || size < 1 || size > MAX_IMAGE_SIZE) {
    throw new PaceOptionError(`size must be a whole number from 1 to ${MAX_IMAGE_SIZE}, got ${size}`);
  }
  const normalization = checkNormalization({ mean, std }, 'options');
  return new Tensor(await nativeAddon().prepareImages(handleOf(images), size, normalization));
}

const AugmentImagesSchema = z
  .object({
    crop: z.number().int().min(1),
    flip: z.boolean().default(false),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  })
  .strict();

/**
 * The training augmentation `fit` applies to uint8 datasets, for inspection: random crop × crop windows and,
 * with `flip`, horizontal flips with probability 1/2, from a seeded generator. With `extents`, the images are of their
 * own sizes, packed `[P, C]` (a TensorDataset's `extents`): each window lies anywhere in its own image.
 */
export async function augmentImages(
  images: Tensor,
  options: { crop: number; flip?: boolean; seed?: number; extents?: Tensor },
): Promise<Tensor> {
  const { extents, ...rest } = options ?? {};
  const { crop, flip, seed } = parseOptions(AugmentImagesSchema, rest, 'options');
  if ((extents ? extents.shape[0] : images.shape[0]) === 0)
    throw new PaceInputError('images: there are none to augment');
  const packed = extents && handleOf(extents);
  return new Tensor(await nativeAddon().augmentImages(handleOf(images), crop, flip, seed, packed));
}
