import fs from 'node:fs';

import sharp from 'sharp';

import { PaceFileError } from '../errors';
import { nativeAddon } from '../native';
import { Tensor } from '../tensor';
import { tooManyJpegScans } from './jpeg-scans';
import { centerCropOffset, torchvisionResizeSize } from './resize-geometry';

/** The first bytes of every JPEG file (SOI, then a marker). */
const JPEG_START = Buffer.from([0xff, 0xd8, 0xff]);

/**
 * How an image is stored: `stretch` resizes both sides to size (bicubic, as the reference's VTAB transform);
 * `center-crop` resizes the shorter side to floor(size / {@link CENTER_CROP_PCT}) and keeps the centre; `cover` resizes the shorter side
 * to size and keeps the central square; `shorter` resizes the shorter side to size and keeps the whole image, at its
 * own size (all three bilinear, as torchvision's `Resize(256)` of the few-shot and FGVC transforms, whose
 * `RandomCrop(224)` ranges over the whole image); `squash-crop` resizes both sides to floor(size /
 * {@link CENTER_CROP_PCT}) and keeps the centre (bicubic, as NOAH's evaluation transform: `Resize((256, 256))` and
 * `CenterCrop(224)`).
 */
export const RESIZE_MODES = ['stretch', 'center-crop', 'cover', 'shorter', 'squash-crop'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

/** The benchmarks' evaluation crop: the shorter side to floor(size / 0.875) (256 for 224), then the centre. */
export const CENTER_CROP_PCT = 0.875;

/**
 * An evaluation resize, resampled by `interpolation`: `stretch`, `center-crop` at `cropPct` (timm's evaluation
 * transform), or `squash-crop` at `cropPct` (timm's under crop_mode 'squash').
 */
export interface EvalResize {
  resize: 'stretch' | 'center-crop' | 'squash-crop';
  cropPct: number;
  interpolation: 'bilinear' | 'bicubic';
}

/** An image's RGB pixels, oriented, at a height and width of their own. */
export interface DecodedImage {
  pixels: Buffer;
  width: number;
  height: number;
}

/**
 * Under `shorter`, the longest the longer side is stored: 4 × the shorter side, its centre kept (a 1 × 12,000 strip
 * would otherwise store 256 × 3,072,000 pixels). No image of the benchmarks' is that long.
 */
export const MAX_STORED_ASPECT = 4;

/**
 * Decodes one image file into RGB uint8 pixels (EXIF orientation applied, alpha dropped, grey and CMYK to sRGB,
 * resized as `mode` says): `size × size`, or under `shorter` at the image's own size. A path that is not a regular
 * file, an empty file or an undecodable image is an error.
 */
export async function decodeImage(file: string, size: number, mode: ResizeMode): Promise<DecodedImage> {
  await checkRegularFile(file);
  await checkJpegScans(file);
  const metadata = await sharp(file, { failOn: 'error', limitInputPixels: false }).metadata();
  // (an image whose header gives no size is taken for a large one)
  const pixels = (metadata.width ?? Infinity) * (metadata.height ?? Infinity);
  const stored = () => decodedAndResized(file, size, mode, metadata);
  return pixels > LARGE_DECODE_PIXELS ? oneLargeAtATime(stored) : stored();
}

/**
 * Past this many pixels (a 24-megapixel photo: 72 MB decoded) decodes wait for each other, so a set's few huge
 * images (up to sharp's limit of 268 megapixels, 800 MB each) hold one decode's memory at a time, not one per CPU.
 */
export const LARGE_DECODE_PIXELS = 24_000_000;
let largeDecodes: Promise<unknown> = Promise.resolve();

/** Runs `work` after every large decode started before it has ended. */
export function oneLargeAtATime<T>(work: () => Promise<T>): Promise<T> {
  const turn = largeDecodes.then(work, work);
  const settled = () => undefined; // (the chain keeps no result alive)
  largeDecodes = turn.then(settled, settled);
  return turn;
}

async function decodedAndResized(
  file: string,
  size: number,
  mode: ResizeMode,
  metadata: sharp.Metadata,
): Promise<DecodedImage> {
  const decoded = await decodeWhole(file, undefined, metadata);
  if (mode === 'shorter') return shorterSide(decoded, size);
  const pixels =
    mode === 'cover'
      ? await covered(decoded, size)
      : await resizedForEvaluation(decoded, size, {
          resize: mode,
          cropPct: CENTER_CROP_PCT,
          interpolation: mode === 'center-crop' ? 'bilinear' : 'bicubic',
        });
  return { pixels, width: size, height: size };
}

/**
 * Refuses a JPEG file of more scans than a photo has ({@link tooManyJpegScans}) before it is decoded. The file is
 * read here and again by the decoder (from the page cache), so the decoder's messages name the file as before.
 */
async function checkJpegScans(file: string): Promise<void> {
  const start = Buffer.alloc(JPEG_START.length);
  const handle = await fs.promises.open(file, 'r');
  try {
    await handle.read(start, 0, start.length, 0);
    if (!start.equals(JPEG_START)) return;
    const why = tooManyJpegScans(await handle.readFile());
    if (why !== undefined) throw new PaceFileError(why);
  } finally {
    await handle.close();
  }
}

/**
 * A decoded image as an evaluation transform resizes it, `size × size` RGB: stretched, or centre-cropped after
 * torchvision's `Resize(floor(size / cropPct), interpolation)` (or its `Resize((s, s))` when squashed), in Pillow's
 * arithmetic (its pixels exactly).
 */
export async function resizedForEvaluation(decoded: DecodedImage, size: number, how: EvalResize): Promise<Buffer> {
  const pixels = await evaluationResize(decoded, size, how);
  if (pixels.length !== size * size * 3)
    throw new PaceFileError(`decoded to ${pixels.length} bytes, not ${size}x${size} RGB`);
  return pixels;
}

function evaluationResize(decoded: DecodedImage, size: number, how: EvalResize): Promise<Buffer> {
  switch (how.resize) {
    case 'stretch':
      return stretched(decoded, size, how.interpolation);
    case 'center-crop':
      return centerCrop(decoded, size, how.cropPct, how.interpolation);
    case 'squash-crop':
      return squashedCrop(decoded, size, how.cropPct, how.interpolation);
  }
}

async function checkRegularFile(file: string): Promise<void> {
  const stat = await fs.promises.stat(file);
  if (!stat.isFile())
    throw new PaceFileError(`not a regular file (${stat.isDirectory() ? 'a folder' : 'a special file'})`);
  if (stat.size === 0) throw new PaceFileError('the file is empty');
}

type Decoded = DecodedImage;

/**
 * The whole image, as Pillow decodes it for torchvision: at full size (no JPEG shrink-on-load: libjpeg's DCT scaling
 * put a 1200 × 900 JPEG's crop a level from Pillow's on average), EXIF orientation applied (a departure: Pillow's
 * `convert('RGB')` leaves a portrait photo on its side; the README's list of departures), alpha dropped rather than
 * multiplied in (resizing with alpha, libvips premultiplies it: transparent pixels turned black), an embedded colour
 * profile ignored as Pillow ignores it, grey to RGB, CMYK to RGB in Pillow's arithmetic. Every resize then starts
 * from these pixels. `metadata` is the input's where the caller has read it already.
 */
export async function decodeWhole(
  input: string | Buffer,
  limitInputPixels?: number,
  metadata?: sharp.Metadata,
): Promise<Decoded> {
  // ignoreIcc: Pillow's convert('RGB') keeps the stored values; sharp would apply an embedded profile (a phone's
  // Display P3 photo came out up to 65 levels off)
  const options = { failOn: 'error' as const, ignoreIcc: true, ...(limitInputPixels && { limitInputPixels }) };
  const image = sharp(input, options).autoOrient().removeAlpha();
  if ((metadata ?? (await image.metadata())).space === 'cmyk') return cmykAsPillow(image);
  const { data, info } = await image.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new PaceFileError(`decoded to ${info.channels} channels, not RGB`);
  return { pixels: data, width: info.width, height: info.height };
}

/**
 * A CMYK image (a print shop's JPEG: ImageNet holds a few) as Pillow's `convert('RGB')` gives it: each channel
 * (255 − K) − C·(255 − K)/255 in its rounding. libvips would convert through a CMYK profile instead, tens of levels
 * from Pillow. The ink values are libvips' own (Adobe's inverted storage undone, as Pillow undoes it). Converted
 * natively on a worker thread: the loop over a 16-megapixel photo held a server's event loop for 440 ms.
 */
async function cmykAsPillow(image: sharp.Sharp): Promise<Decoded> {
  const { data, info } = await image
    .pipelineColourspace('cmyk')
    .toColourspace('cmyk')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new PaceFileError(`decoded to ${info.channels} channels, not CMYK`);
  using rgb = new Tensor(await nativeAddon().cmykToRgbPillow(data, [info.height, info.width, 4]));
  const converted = rgb.view(); // the tensor's memory, kept alive by the view (a copy held the loop 120 ms)
  const pixels = Buffer.from(converted.buffer, converted.byteOffset, converted.byteLength);
  return { pixels, width: info.width, height: info.height };
}

/**
 * A side libvips' resize is known to produce: libvips 8.17 refuses one past about 2^25 ("affine: output
 * coordinates out of range"); half that, for margin.
 */
const LIBVIPS_LONGEST_RESIZE = 2 ** 24;

const fromRaw = ({ pixels, width, height }: Decoded) => sharp(pixels, { raw: { width, height, channels: 3 } });

/**
 * An evaluation resize by libvips alone, `size × size` RGB: the geometry of {@link resizedForEvaluation} (torchvision's
 * sizes and offsets), but libvips' resampling, which shrinks a JPEG while decoding it. About ten times faster on a
 * 12 MP photo, and a level or two off Pillow's pixels: what a server may choose over exactness. `metadata` is the
 * input's, as the caller read it to check the upload.
 */
export async function fastResizedForEvaluation(
  input: Buffer,
  metadata: sharp.Metadata,
  size: number,
  how: EvalResize,
  limitInputPixels: number,
): Promise<Buffer> {
  const turned = (metadata.orientation ?? 1) >= 5; // autoOrient swaps the sides of these
  const [width, height] = turned ? [metadata.height!, metadata.width!] : [metadata.width!, metadata.height!];
  const scaled = Math.floor(size / how.cropPct);
  const whole =
    how.resize === 'squash-crop' ? { width: scaled, height: scaled } : torchvisionResizeSize(width, height, scaled);
  const wholeTooLarge =
    whole.width * whole.height > limitInputPixels || Math.max(whole.width, whole.height) > LIBVIPS_LONGEST_RESIZE;
  if (how.resize !== 'stretch' && wholeTooLarge) {
    // A thin strip resized whole (1 × 200,000 at 224: 256 × 51,200,000) is past what libvips resizes: the exact
    // path resizes the crop's window alone, and the strip's few pixels cost little to decode whole.
    return resizedForEvaluation(await decodeWhole(input, limitInputPixels, metadata), size, how);
  }
  const options = { failOn: 'error' as const, ignoreIcc: true, limitInputPixels };
  let image = sharp(input, options).autoOrient().removeAlpha().toColourspace('srgb');
  if (metadata.space === 'cmyk') {
    image = fromRaw(await decodeWhole(input, limitInputPixels, metadata)); // libvips' own CMYK conversion is far off Pillow's
  } else if (metadata.hasAlpha) {
    // Resizing with alpha, libvips premultiplies it (transparent pixels turn black): dropped first instead.
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    image = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  }
  const kernel = how.interpolation === 'bicubic' ? 'cubic' : 'linear';
  if (how.resize === 'stretch') return image.resize(size, size, { fit: 'fill', kernel }).raw().toBuffer();
  const window = {
    left: centerCropOffset(whole.width, size),
    top: centerCropOffset(whole.height, size),
    width: size,
    height: size,
  };
  return image.resize(whole.width, whole.height, { fit: 'fill', kernel }).extract(window).raw().toBuffer();
}

/** Pillow's resize of the decoded image (its integer arithmetic, natively); with `window`, only that part of it. */
async function resizedAsPillow(
  decoded: Decoded,
  height: number,
  width: number,
  filter: 'bilinear' | 'bicubic',
  window?: { top: number; left: number; height: number; width: number },
): Promise<Buffer> {
  const { pixels } = decoded;
  const shape: [number, number, number] = [decoded.height, decoded.width, 3];
  using resized = new Tensor(await nativeAddon().resizeImagePillow(pixels, shape, height, width, filter, window));
  return Buffer.from(resized.toUint8Array());
}

/** Both sides to `size`, as Pillow's `Resize((size, size), filter)` (VTAB's transform), in Pillow's arithmetic. */
function stretched(decoded: Decoded, size: number, filter: 'bilinear' | 'bicubic'): Promise<Buffer> {
  return resizedAsPillow(decoded, size, size, filter);
}

/** torchvision's `Resize(size)` then `CenterCrop(size)` (bilinear): the shorter side to size, the central square. */
function covered(decoded: Decoded, size: number): Promise<Buffer> {
  return centerCrop(decoded, size, 1, 'bilinear');
}

/**
 * torchvision's `Resize((s, s), filter)` then `CenterCrop(size)`, s = floor(size / cropPct): timm's evaluation
 * transform under crop_mode 'squash', and NOAH's (bicubic at 0.875), in Pillow's arithmetic, the resize computed for
 * the crop's window alone.
 */
function squashedCrop(
  decoded: Decoded,
  size: number,
  cropPct: number,
  filter: 'bilinear' | 'bicubic',
): Promise<Buffer> {
  const whole = Math.floor(size / cropPct);
  const offset = centerCropOffset(whole, size);
  return resizedAsPillow(decoded, whole, whole, filter, { top: offset, left: offset, height: size, width: size });
}

/**
 * torchvision's `Resize(floor(size / cropPct), filter)` then `CenterCrop(size)` of a Pillow image: the resize at
 * torchvision's size (the longer side truncated) in Pillow's arithmetic, computed natively for the crop's window
 * alone (a thin 1 × 12,000 image is not resized whole to 256 × 3,072,000), at torchvision's offsets. The same pixels
 * as Pillow and torchvision give.
 */
function centerCrop(decoded: Decoded, size: number, cropPct: number, filter: 'bilinear' | 'bicubic'): Promise<Buffer> {
  const whole = torchvisionResizeSize(decoded.width, decoded.height, Math.floor(size / cropPct));
  const window = {
    top: centerCropOffset(whole.height, size),
    left: centerCropOffset(whole.width, size),
    height: size,
    width: size,
  };
  return resizedAsPillow(decoded, whole.height, whole.width, filter, window);
}

/**
 * torchvision's `Resize(size)` of a Pillow image, whole: the shorter side to `size` and the longer truncated as
 * torchvision computes it, in Pillow's bilinear arithmetic (the pixels its `RandomCrop` takes windows of). A longer
 * side past {@link MAX_STORED_ASPECT} × size keeps its centre, at torchvision's offset.
 */
async function shorterSide(decoded: Decoded, size: number): Promise<Decoded> {
  const whole = torchvisionResizeSize(decoded.width, decoded.height, size);
  const longest = MAX_STORED_ASPECT * size;
  const height = Math.min(whole.height, longest);
  const width = Math.min(whole.width, longest);
  const window = {
    top: centerCropOffset(whole.height, height),
    left: centerCropOffset(whole.width, width),
    height,
    width,
  };
  const pixels = await resizedAsPillow(decoded, whole.height, whole.width, 'bilinear', window);
  if (pixels.length !== width * height * 3)
    throw new PaceFileError(`decoded to ${pixels.length} bytes, not ${width}x${height} RGB`);
  return { pixels, width, height };
}
