import { z } from 'zod';

import { PaceOptionError } from '../errors';
import {
  nativeAddon,
  type NativeInterpolation,
  type NativeMixupOptions,
  type NativeRandAugmentConfig,
  type NativeRandomErasingOptions,
  type NativeResizedCropOptions,
} from '../native';
import { parseOptions } from '../options';
import { handleOf, Tensor } from '../tensor';
import { MAX_IMAGE_SIZE } from './prepare';

const range = z.tuple([z.number().positive(), z.number().positive()]).refine(([min, max]) => min <= max, {
  message: 'must be [min, max] with min <= max',
});

/**
 * The resampling of the random resized crop and of RandAugment's rotate, shear and translate, as timm's
 * `interpolation`: `bilinear` (timm's create_transform default), `bicubic` (DeiT's and NOAH's
 * `--train-interpolation`) or `random` (either, drawn per use: timm's train.py default). Pillow's pixels.
 */
export const INTERPOLATIONS = ['bilinear', 'bicubic', 'random'] as const satisfies readonly NativeInterpolation[];
const InterpolationSchema = z.enum(INTERPOLATIONS);

/** timm's RandomResizedCrop: `scale` of the image's area (default [0.08, 1]), `ratio` w/h (default [3/4, 4/3]). */
export const ResizedCropSchema = z
  .object({
    scale: range.refine(([, max]) => max <= 1, { message: 'the largest scale is 1 (the whole image)' }).optional(),
    ratio: range.optional(),
  })
  .strict();

/**
 * timm's RandomErasing of each normalised image, before mixup; defaults: DeiT's recipe (`--reprob 0.25 --remode
 * pixel --recount 1`). A box of 2-33 % of the image's area, aspect ratio 0.3-3.3 (10 tries), filled with normal
 * noise per pixel (`pixel`), per box (`rand`) or zeros (`const`, the normalised mean).
 */
export const RandomErasingSchema = z
  .object({
    /** The probability of erasing an image; 0 turns erasing off (nothing drawn, as timm's `--reprob 0`). */
    prob: z.number().min(0).max(1).optional(),
    fill: z.enum(['const', 'rand', 'pixel']).optional(),
    /** At most this many boxes an image, their number uniform from 1 (the area shared among them). */
    count: z.number().int().min(1).max(100).optional(),
  })
  .strict();

/** timm's Mixup in batch mode; defaults: DeiT's recipe (mixup 0.8, CutMix 1.0, prob 1, switch 0.5, smoothing 0.1). */
export const MixupSchema = z
  .object({
    /** Beta(α, α) of mixup's λ; 0 turns mixup off. */
    mixupAlpha: z.number().min(0).optional(),
    /** Beta(α, α) of CutMix's λ; 0 turns CutMix off. */
    cutmixAlpha: z.number().min(0).optional(),
    /** The probability of mixing a batch. */
    prob: z.number().min(0).max(1).optional(),
    /** The probability of CutMix rather than mixup when both are on. */
    switchProb: z.number().min(0).max(1).optional(),
    /** ε: the targets are (1 − ε + ε/classes) on the label, ε/classes elsewhere. */
    labelSmoothing: z.number().min(0).lt(1).optional(),
    /** CutMix's λ from the area of the box clipped to the image (default true). */
    correctLambda: z.boolean().optional(),
  })
  .strict()
  .refine((m) => m.mixupAlpha !== 0 || m.cutmixAlpha !== 0, {
    message: 'mixupAlpha and cutmixAlpha are both 0: nothing would be mixed',
  });

/** Training augmentation of a dataset, applied natively per batch by `fit` (never in evaluation). */
export const AugmentationSchema = z
  .object({
    /** A random crop × crop window (torchvision's RandomCrop); the stored size when absent. uint8 datasets. */
    crop: z.number().int().min(1).optional(),
    /** Horizontal flips with probability 1/2 (RandomHorizontalFlip), after the crop. uint8 datasets. */
    flip: z.boolean().optional(),
    /**
     * timm's RandomResizedCrop to the model's size instead of `crop`: a box of 8-100 % of the stored image's area
     * and aspect ratio 3/4-4/3 (10 tries, then the centre), bilinear. `true` for timm's ranges; `false`: none (in
     * fit's augment, the dataset's is turned off). uint8 datasets.
     */
    resizedCrop: z.union([z.boolean(), ResizedCropSchema]).optional(),
    /** timm's RandAugment config string, e.g. `rand-m9-mstd0.5-inc1`. uint8 datasets with 1 or 3 channels. */
    randAugment: z.string().min(1).optional(),
    /**
     * The resampling of `resizedCrop` and of `randAugment`'s rotate, shear and translate: `bilinear` (the
     * default, timm's create_transform's), `bicubic` (DeiT's and NOAH's recipe) or `random` (either per use, timm's
     * train.py). It changes nothing without one of those.
     */
    interpolation: InterpolationSchema.optional(),
    /**
     * timm's RandomErasing of each normalised image (after RandAugment, before mixup); `true` for DeiT's recipe;
     * `false`: none (in fit's augment, the dataset's is turned off). Any dataset.
     */
    randomErasing: z.union([z.boolean(), RandomErasingSchema]).optional(),
    /**
     * timm's Mixup/CutMix with label smoothing (soft targets); `true` for DeiT's recipe; `false`: none (in fit's
     * augment, the dataset's is turned off). Any dataset.
     */
    mixup: z.union([z.boolean(), MixupSchema]).optional(),
  })
  .strict();

/** Training augmentation as a user gives it (see {@link AugmentationSchema}). */
export type Augmentation = z.input<typeof AugmentationSchema>;

/** The options that work on uint8 pixels `[N, H, W, C]` (random erasing and mixup apply to float images too). */
const pixelOptions = ['crop', 'flip', 'resizedCrop', 'randAugment'] as const;

/** Whether an option is set: `false` is its absence (what fit's augment gives to turn a dataset's off). */
const isSet = (value: unknown) => value !== undefined && value !== false;

/** Whether an augmentation (as given, not yet validated) has an option that works on uint8 pixels. */
export function augmentationNeedsPixels(augment: unknown): boolean {
  if (typeof augment !== 'object' || augment === null) return false;
  return pixelOptions.some((key) => isSet((augment as Record<string, unknown>)[key]));
}

/**
 * Validates an augmentation against the images it applies to (`[N, H, W, C]` uint8 or float `[N, 3, S, S]`),
 * throwing PaceOptionError / PaceShapeError naming the field; returns a copy.
 */
export function checkAugmentation(augment: unknown, shape: readonly number[], pixels: boolean): Augmentation {
  const parsed = parseOptions(AugmentationSchema, augment, 'augment');
  if (!isSet(parsed.resizedCrop)) delete parsed.resizedCrop;
  if (!isSet(parsed.mixup)) delete parsed.mixup;
  if (!isSet(parsed.randomErasing)) delete parsed.randomErasing;
  const needsPixels = pixelOptions.filter((k) => isSet(parsed[k]));
  if (needsPixels.length > 0 && pixels && shape.length === 3) {
    throw new PaceOptionError(
      `augment.${needsPixels[0]} needs a channel axis: these grey uint8 images are [${shape.join(',')}]; give them as ` +
        '[N, H, W, 1], or create the TensorDataset with this augment (it keeps them so)',
    );
  }
  if (needsPixels.length > 0 && (!pixels || shape.length !== 4)) {
    throw new PaceOptionError(
      `augment.${needsPixels[0]} needs uint8 images [N, H, W, C]; got [${shape.join(',')}] (only randomErasing and mixup apply to float images)`,
    );
  }
  if (parsed.crop !== undefined && parsed.resizedCrop !== undefined) {
    throw new PaceOptionError('augment.crop and augment.resizedCrop are alternatives: the resized crop sets the size');
  }
  if (parsed.crop !== undefined && parsed.crop > Math.min(shape[1], shape[2])) {
    throw new PaceOptionError(`augment.crop ${parsed.crop} does not fit images of ${shape[1]}x${shape[2]}`);
  }
  if (parsed.randAugment !== undefined) {
    randAugmentConfig(parsed.randAugment); // the core reads the string: its errors name the bad section
    if (shape[3] !== 1 && shape[3] !== 3) {
      throw new PaceOptionError(`augment.randAugment needs grey or RGB images; these have ${shape[3]} channels`);
    }
  }
  return parsed;
}

/** The epoch loop's form of an augmentation (its native options). */
export function nativeAugmentation(augment: Augmentation | undefined): {
  augmentCrop: number;
  augmentFlip: boolean;
  resizedCrop?: NativeResizedCropOptions;
  randAugment?: string;
  interpolation?: NativeInterpolation;
  randomErasing?: NativeRandomErasingOptions;
  mixup?: NativeMixupOptions;
} {
  return {
    augmentCrop: augment?.crop ?? 0,
    augmentFlip: augment?.flip ?? false,
    ...(augment?.resizedCrop && {
      resizedCrop: augment.resizedCrop === true ? {} : (augment.resizedCrop as NativeResizedCropOptions),
    }),
    ...(augment?.randAugment !== undefined && { randAugment: augment.randAugment }),
    ...(augment?.interpolation !== undefined && { interpolation: augment.interpolation }),
    ...(augment?.randomErasing && {
      randomErasing: augment.randomErasing === true ? {} : augment.randomErasing,
    }),
    ...(augment?.mixup && { mixup: augment.mixup === true ? {} : augment.mixup }),
  };
}

/** RandAugment's settings as the core reads a timm config string (throws PaceOptionError naming a bad section). */
export function randAugmentConfig(config: string): NativeRandAugmentConfig {
  return nativeAddon().randAugmentConfig(config);
}

/** The colour RandAugment's affine operations fill with, as timm: the normalisation mean × 255, rounded. */
export function augmentFill(mean: readonly number[]): number[] {
  return [0, 1, 2].map((c) => Math.min(255, Math.max(0, roundHalfEven(255 * mean[c]))));
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One RandAugment operation (`Rotate`, `SolarizeIncreasing`, …, the names in {@link randAugmentConfig}'s `ops`) on
 * one uint8 image `[H, W, C]` at a magnitude (0-10 on timm's scale, after any noise) and sign, as fit applies it;
 * rotate, shear and translate resample with `interpolation` (default bilinear) and fill what they uncover with
 * `fill`. PIL's arithmetic on the image as given: a grey image stays grey, filled with `fill[0]` (a fit, and
 * {@link randAugmentImages}, augment grey images as RGB when the fill is not grey).
 */
export async function randAugmentOp(
  image: Tensor,
  op: string,
  options: { magnitude: number; negate?: boolean; fill?: number[]; interpolation?: 'bilinear' | 'bicubic' },
): Promise<Tensor> {
  const { magnitude, negate = false, fill = [128, 128, 128] } = options;
  const interpolation = parseOptions(
    z.enum(['bilinear', 'bicubic']).optional(),
    options.interpolation,
    'options.interpolation',
  );
  return new Tensor(await nativeAddon().randAugmentOp(handleOf(image), op, magnitude, negate, fill, interpolation));
}

/**
 * RandAugment over uint8 images `[N, H, W, C]` from a seeded generator, as fit applies it per batch: grey images
 * with a fill that is not grey are augmented, and come back, as RGB (timm converts images to RGB first).
 */
export async function randAugmentImages(
  images: Tensor,
  options: { config: string; fill?: number[]; seed?: number; interpolation?: NativeInterpolation },
): Promise<Tensor> {
  const { config, fill = [128, 128, 128] } = options;
  const seed = parseOptions(SeedSchema, options.seed, 'options.seed');
  const interpolation = parseOptions(InterpolationSchema.optional(), options.interpolation, 'options.interpolation');
  return new Tensor(await nativeAddon().randAugmentImages(handleOf(images), config, fill, seed, interpolation));
}

/** A generator's seed: a whole number JavaScript holds exactly (a fraction or NaN would be truncated or 0). */
const SeedSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0);
const ImageSizeSchema = z.number().int().min(1).max(MAX_IMAGE_SIZE);

/**
 * Random resized crops of uint8 images `[N, H, W, C]` to `size × size` (and flips), as fit applies them, resampled
 * with `interpolation` (default bilinear); with the boxes (top, left, height, width) and which images were flipped.
 */
export async function resizedCropImages(
  images: Tensor,
  options: { size: number; flip?: boolean; seed?: number; interpolation?: NativeInterpolation } & z.input<
    typeof ResizedCropSchema
  >,
): Promise<{ images: Tensor; boxes: Tensor; flipped: Tensor }> {
  const { size: givenSize, flip = false, seed: givenSeed, interpolation: givenInterpolation, ...ranges } = options;
  const checked = parseOptions(ResizedCropSchema, ranges, 'options');
  const size = parseOptions(ImageSizeSchema, givenSize, 'options.size');
  const seed = parseOptions(SeedSchema, givenSeed, 'options.seed');
  const interpolation = parseOptions(InterpolationSchema.optional(), givenInterpolation, 'options.interpolation');
  const out = await nativeAddon().resizedCropImages(
    handleOf(images),
    size,
    { ...checked, ...(interpolation && { interpolation }) },
    flip,
    seed,
  );
  return { images: new Tensor(out.images), boxes: new Tensor(out.boxes), flipped: new Tensor(out.flipped) };
}

/**
 * timm's RandomErasing of a normalised float batch `[B, C, H, W]` from a seeded generator, as fit applies it: the
 * erased copy (`images` itself when no image was erased) and each box erased, `[image, top, left, height, width]`.
 */
export async function randomErasingImages(
  images: Tensor,
  options: { seed?: number } & z.input<typeof RandomErasingSchema> = {},
): Promise<{ images: Tensor; boxes: number[][] }> {
  const { seed: givenSeed, ...erasing } = options;
  const checked = parseOptions(RandomErasingSchema, erasing, 'options');
  const seed = parseOptions(SeedSchema, givenSeed, 'options.seed');
  const out = await nativeAddon().randomErasingImages(handleOf(images), checked, seed);
  return { images: new Tensor(out.images), boxes: out.boxes.map((box) => [...box]) };
}

/**
 * timm's Mixup/CutMix of a float batch `[B, C, H, W]` with int64 labels `[B]`, as fit applies it: the mixed images,
 * the soft targets `[B, numClasses]`, λ, whether CutMix was used and its box (rows top-bottom, columns left-right).
 */
export async function mixupImages(
  images: Tensor,
  labels: Tensor,
  options: { numClasses: number; seed?: number } & z.input<typeof MixupSchema>,
): Promise<{ images: Tensor; targets: Tensor; lambda: number; cutmix: boolean; box: number[] }> {
  const { numClasses: givenClasses, seed: givenSeed, ...mixup } = options;
  const checked = parseOptions(MixupSchema, mixup, 'options');
  const numClasses = parseOptions(
    z
      .number()
      .int()
      .min(1)
      .max(2 ** 24),
    givenClasses,
    'options.numClasses',
  );
  const seed = parseOptions(SeedSchema, givenSeed, 'options.seed');
  const out = await nativeAddon().mixupImages(handleOf(images), handleOf(labels), numClasses, checked, seed);
  return { ...out, images: new Tensor(out.images), targets: new Tensor(out.targets), box: [...out.box] };
}

/**
 * The training loss's cross-entropy: int64 targets `[B]` as usual, float soft targets `[B, C]` as timm's
 * SoftTargetCrossEntropy (mean over the batch of −Σ t · log_softmax(logits)). A scalar tensor.
 */
export async function crossEntropy(logits: Tensor, targets: Tensor): Promise<Tensor> {
  return new Tensor(await nativeAddon().crossEntropy(handleOf(logits), handleOf(targets)));
}
