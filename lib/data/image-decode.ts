import fs from 'node:fs';

import sharp from 'sharp';

import { PaceFileError } from '../errors';
import { nativeAddon } from '../native';
import { handleOf, Tensor, tensor } from '../tensor';
import { centerCropOffset, torchvisionResizeSize } from './resize-geometry';

/**
 * How an image becomes `size × size`: `stretch` resizes both sides to size (bicubic, as the reference's VTAB
 * transform); `center-crop` resizes the shorter side to floor(size / 0.875) and keeps the centre; `cover` resizes the
 * shorter side to size and keeps the centre (both bilinear, as torchvision's `Resize(256)` of the few-shot and FGVC
 * transforms).
 */
export const RESIZE_MODES = ['stretch', 'center-crop', 'cover'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

/**
 * Decodes one image file into `size × size` RGB uint8 pixels (EXIF orientation applied, alpha dropped, grey and CMYK
 * to sRGB, resized as `mode` says). A path that is not a regular file, an empty file or an undecodable image is an
 * error.
 */
export async function decodeImage(file: string, size: number, mode: ResizeMode): Promise<Buffer> {
  await checkRegularFile(file);
  const pixels =
    mode === 'center-crop'
      ? await centerCrop(file, size)
      : mode === 'stretch'
        ? await stretched(file, size)
        : await resized(file, size, mode);
  if (pixels.length !== size * size * 3)
    throw new PaceFileError(`decoded to ${pixels.length} bytes, not ${size}x${size} RGB`);
  return pixels;
}

async function checkRegularFile(file: string): Promise<void> {
  const stat = await fs.promises.stat(file);
  if (!stat.isFile())
    throw new PaceFileError(`not a regular file (${stat.isDirectory() ? 'a folder' : 'a special file'})`);
  if (stat.size === 0) throw new PaceFileError('the file is empty');
}

const open = (file: string) => sharp(file, { failOn: 'error' });
const toRgb = (image: sharp.Sharp) => image.removeAlpha().toColourspace('srgb').raw().toBuffer();

/**
 * Both sides to `size`, bicubic, as Pillow's `Resize((size, size), BICUBIC)`. An image made larger along either side
 * is resized natively as Pillow resizes it: libvips samples an enlargement half an output pixel up and left of
 * Pillow (VTAB's 32 × 32 images at 224: 8 levels apart on average). Shrinking, libvips' is within a level of it.
 */
async function stretched(file: string, size: number): Promise<Buffer> {
  const header = await open(file).metadata();
  const turned = (header.orientation ?? 1) >= 5;
  const [width, height] = turned ? [header.height, header.width] : [header.width, header.height];
  if (width >= size && height >= size) return resized(file, size, 'stretch');
  const { data, info } = await open(file)
    .autoOrient()
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new PaceFileError(`decoded to ${info.channels} channels, not RGB`);
  using image = tensor(new Uint8Array(data.buffer, data.byteOffset, data.length), [info.height, info.width, 3], {
    dtype: 'uint8',
  });
  using resizedImage = new Tensor(await nativeAddon().resizeImageBicubic(handleOf(image), size, size));
  return Buffer.from(resizedImage.toUint8Array());
}

function resized(file: string, size: number, mode: 'stretch' | 'cover'): Promise<Buffer> {
  const options =
    mode === 'stretch'
      ? ({ fit: 'fill', kernel: 'cubic' } as const)
      : ({ fit: 'cover', position: 'centre', kernel: 'linear' } as const);
  return toRgb(open(file).autoOrient().resize(size, size, options));
}

/** Rows of the resized image are taken whole up to this many times the shorter side (see {@link centerCrop}). */
const MAX_WHOLE_ROWS_RATIO = 16;

/**
 * The shorter side to floor(size / 0.875), then the central `size × size`, in one pipeline: libvips computes only
 * the rows the crop keeps, so a thin image (1×4000) costs what its crop costs, not the 256×1,024,000 resize. The
 * resized size and the crop's place are torchvision's, computed from the header.
 *
 * libvips steps its sampling position across each region it computes, starting from the region's left edge, so a
 * region that starts at the crop's left can round a weight differently (by a level, now and then) than a
 * whole resize, whose regions start at 0. The rows are therefore taken whole and their middle cut here, which gives
 * a whole resize's pixels exactly; only rows more than 16 times as wide as the shorter side (costing more than the
 * crop is worth) are cut by libvips.
 */
async function centerCrop(file: string, size: number): Promise<Buffer> {
  const header = await open(file).metadata();
  const shorter = Math.floor(size / 0.875);
  const whole = torchvisionResizeSize(header, shorter);
  const crop = {
    left: centerCropOffset(whole.width, size),
    top: centerCropOffset(whole.height, size),
    width: size,
    height: size,
  };
  const rows = { left: 0, top: crop.top, width: whole.width, height: size };
  const band = whole.width <= MAX_WHOLE_ROWS_RATIO * shorter ? rows : crop;
  // A whole-image extract first: sharp then decodes at full size, as Pillow does, rather than shrinking a JPEG or
  // WebP while loading it (libjpeg's DCT scaling by 2 put a 1200 × 900 JPEG's crop a level from Pillow's on
  // average, 6 at most; 0.25 and 1 without it).
  const image = open(file).extract({
    left: 0,
    top: 0,
    width: header.width,
    height: header.pageHeight ?? header.height,
  });
  // autoOrient after extract: called before it, sharp would orient before resizing, which turns JPEG
  // shrink-on-load off and changes the pixels. Oriented after the resize, the sizes and offsets are in oriented space.
  const pixels = await toRgb(
    image.resize(whole.width, whole.height, { fit: 'fill', kernel: 'linear' }).extract(band).autoOrient(),
  );
  return band === rows ? middleColumns(pixels, whole.width, crop.left, size) : pixels;
}

/** Columns left..left+size of RGB rows `width` pixels wide. */
function middleColumns(rows: Buffer, width: number, left: number, size: number): Buffer {
  const out = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) rows.copy(out, y * size * 3, (y * width + left) * 3, (y * width + left + size) * 3);
  return out;
}
