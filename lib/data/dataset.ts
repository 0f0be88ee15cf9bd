import { PaceOptionError, PaceShapeError } from '../errors';
import { tensor, type Tensor } from '../tensor';
import { augmentationNeedsPixels, checkAugmentation, type Augmentation } from './augment';
import { checkNormalization, type Normalization } from './normalization';

export type { Augmentation } from './augment';
export type { Normalization } from './normalization';

/**
 * Images and labels held in tensors; batches are assembled natively, with no per-image JavaScript work.
 *
 * - float images `[N, 3, S, S]`, already normalised for the model (finite: a fit refuses NaN or infinity before
 *   its first step, naming the first such sample); or
 * - decoded uint8 pixels `[N, H, W]` / `[N, H, W, C]` (C = 1, 3, 4) with a `normalization`: each batch is
 *   converted natively (grey to RGB, resized to the model's size with antialiased bicubic, normalised), so
 *   the dataset keeps a quarter of the memory of float32.
 *
 * - images of their own sizes: uint8 pixels packed `[P, C]` with `extents`, int64 `[N, 2]` (each image's height and
 *   width; its pixels, row by row, follow the previous image's), as few-shot and FGVC training store torchvision's
 *   Resize(256) for random crops over the whole image. Training needs `augment.crop` or `augment.resizedCrop` (they
 *   make a batch's images one size); evaluation takes each image's centre crop at the model's size.
 *
 * Labels are int64 `[N]`. `augment` is the training augmentation `fit` applies per batch (see {@link Augmentation}):
 * crops, flips, timm's RandomResizedCrop and RandAugment on uint8 images, mixup/CutMix on any. Grey images
 * `[N, H, W]` given with such an augmentation are kept as `[N, H, W, 1]` (a copy), which the augmentation needs.
 * A normalization is three means from -1 to 2 and three stds from 1e-3 to 10, in the units of pixels scaled to
 * [0, 1] (a PaceOptionError names a bad value).
 */
export class TensorDataset {
  readonly images: Tensor;
  readonly labels: Tensor;
  readonly normalization?: Normalization;
  readonly augment?: Augmentation;
  /** The extents `[N, 2]` of images of their own sizes, packed in `images` `[P, C]`. */
  readonly extents?: Tensor;

  constructor(
    images: Tensor,
    labels: Tensor,
    options: { normalization?: Normalization; augment?: Augmentation; extents?: Tensor } = {},
  ) {
    if (options.extents) {
      this.images = images;
      this.labels = labels;
      this.extents = options.extents;
      const smallest = checkPacked(images, labels, options.extents);
      if (!options.normalization) {
        throw new PaceOptionError('uint8 images need options.normalization ({ mean, std }, e.g. model.preprocessing)');
      }
      this.normalization = checkNormalization(options.normalization, 'options.normalization');
      const crop = (options.augment as { crop?: unknown } | undefined)?.crop;
      if (typeof crop === 'number' && crop > smallest) {
        throw new PaceOptionError(
          `augment.crop ${crop} does not fit these images: the smallest side of one is ${smallest}`,
        );
      }
      const asStored = [labels.shape[0], smallest, smallest, images.shape[1]];
      if (options.augment) this.augment = checkAugmentation(options.augment, asStored, true);
      return;
    }
    const shape = images.shape;
    if (['float64', 'float16', 'bfloat16'].includes(images.dtype)) {
      throw new PaceShapeError(
        `images must be float32, as the model's weights are; got ${images.dtype}: convert them with .cast('float32')`,
      );
    }
    const float = images.dtype === 'float32';
    const pixels =
      images.dtype === 'uint8' && (shape.length === 3 || (shape.length === 4 && [1, 3, 4].includes(shape[3])));
    if (!(float && shape.length === 4 && shape[1] === 3) && !pixels) {
      throw new PaceShapeError(
        `images must be float32 [N, 3, S, S] or uint8 [N, H, W] / [N, H, W, C]; got ${images.dtype} [${shape.join(',')}]`,
      );
    }
    if (pixels && !options.normalization) {
      throw new PaceOptionError('uint8 images need options.normalization ({ mean, std }, e.g. model.preprocessing)');
    }
    if (float && options.normalization) {
      // (It was dropped unsaid: a PyTorch user's [0, 1] floats with ToTensor's Normalize reached the model raw.)
      throw new PaceOptionError(
        'float32 images are used as given, already normalised for the model: normalise them first, or give the ' +
          'uint8 pixels with options.normalization',
      );
    }
    const normalization = options.normalization && checkNormalization(options.normalization, 'options.normalization');
    if (labels.dtype !== 'int64' || labels.shape.length !== 1) {
      throw new PaceShapeError(`labels must be an int64 tensor [N]; got ${labels.dtype} [${labels.shape.join(',')}]`);
    }
    if (labels.shape[0] !== shape[0]) {
      throw new PaceShapeError(`the dataset has ${shape[0]} images but ${labels.shape[0]} labels`);
    }
    const greyWithChannel = pixels && shape.length === 3 && augmentationNeedsPixels(options.augment);
    this.images = greyWithChannel ? tensor(images.view(), [...shape, 1]) : images;
    this.labels = labels;
    if (pixels) this.normalization = normalization;
    if (options.augment) this.augment = checkAugmentation(options.augment, this.images.shape, pixels);
  }

  /** The number of samples. */
  get length(): number {
    return this.labels.shape[0];
  }
}

/** Checks packed images of their own sizes against their extents and labels; returns the smallest side. */
function checkPacked(images: Tensor, labels: Tensor, extents: Tensor): number {
  const [pixels, channels] = images.shape;
  if (images.dtype !== 'uint8' || images.shape.length !== 2 || ![1, 3, 4].includes(channels)) {
    throw new PaceShapeError(
      `images of their own sizes must be uint8 pixels [P, C] (C = 1, 3 or 4) with their extents; got ${images.dtype} [${images.shape.join(',')}]`,
    );
  }
  if (extents.dtype !== 'int64' || extents.shape.length !== 2 || extents.shape[1] !== 2) {
    throw new PaceShapeError(
      `options.extents must be int64 [N, 2] (each image's height and width); got ${extents.dtype} [${extents.shape.join(',')}]`,
    );
  }
  if (labels.dtype !== 'int64' || labels.shape.length !== 1) {
    throw new PaceShapeError(`labels must be an int64 tensor [N]; got ${labels.dtype} [${labels.shape.join(',')}]`);
  }
  if (labels.shape[0] !== extents.shape[0]) {
    throw new PaceShapeError(`the dataset has ${extents.shape[0]} images but ${labels.shape[0]} labels`);
  }
  const sides = extents.toBigInt64Array();
  let total = 0;
  let smallest = Infinity;
  for (let i = 0; i < sides.length; i += 2) {
    const [height, width] = [Number(sides[i]), Number(sides[i + 1])];
    if (!(height >= 1 && width >= 1)) {
      throw new PaceShapeError(`options.extents: image ${i / 2} is ${height}x${width}; each side needs a pixel`);
    }
    total += height * width;
    smallest = Math.min(smallest, height, width);
  }
  if (total !== pixels) {
    throw new PaceShapeError(`options.extents add up to ${total} pixels, but the images hold ${pixels}`);
  }
  return smallest;
}

/**
 * Refuses float images an evaluation of a model taking `imageSize` could not run (uint8 pixels are resized to it;
 * float images are not), naming the set: `options.validation: its float32 images are [N, 3, 48, 48], …`.
 */
export function checkEvaluationImages(set: TensorDataset, imageSize: number, where: string): void {
  const shape = set.images.shape;
  if (set.images.dtype !== 'float32' || (shape[2] === imageSize && shape[3] === imageSize)) return;
  throw new PaceShapeError(
    `${where}: its float32 images are [${shape.join(', ')}], and the model takes [N, 3, ${imageSize}, ${imageSize}] ` +
      '(float images are used as they are: resize them, or give uint8 pixels with a normalization)',
  );
}
