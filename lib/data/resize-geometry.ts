/**
 * The size sharp 0.34 (libvips 8.17) resizes an image to with `resize(target, target, { fit: 'outside' })`, computed
 * from its header alone, so that a crop of the result can be placed in the same pipeline. Each step is the C code's
 * double arithmetic in the same order: sharp's `ResolveShrink` (src/common.cc) and shrink-on-load (src/pipeline.cc),
 * libvips' `jpegload` (rounds down), `webpload` (rint), `vips_reduceh/v` (round half up) and `vips_affine` (rounds
 * the mapped corners) as `vips_resize` calls them.
 */

/** What sharp's `metadata()` says of an image, as far as its resize depends on it. */
export interface ImageHeader {
  format?: string;
  /** Stored (not oriented) width and height; of one page for multi-page images. */
  width: number;
  height: number;
  /** The EXIF orientation, 1-8. */
  orientation?: number;
  pages?: number;
}

/**
 * Whether sharp would shrink this image while loading it in a way {@link outsideResizeSize} does not model: SVG and
 * PDF render at a scale from their fractional natural size, and an animated WebP shrinks on load only when every
 * frame fills the canvas. Such images are resized from their full size instead (a whole-image pre-extract turns
 * shrink-on-load off).
 */
export function shrinksOnLoadUnmodelled(header: ImageHeader): boolean {
  return header.format === 'svg' || header.format === 'pdf' || (header.format === 'webp' && (header.pages ?? 1) > 1);
}

/** The oriented width and height of the image after sharp's resize with fit 'outside' to `target × target`. */
export function outsideResizeSize(header: ImageHeader, target: number): { width: number; height: number } {
  const first = outsideShrink(header.width, header.height, target);
  const [loadedWidth, loadedHeight] = shrinksOnLoadUnmodelled(header)
    ? [header.width, header.height]
    : sizeAfterShrinkOnLoad(header, Math.min(first.h, first.v));
  const { h, v } = outsideShrink(loadedWidth, loadedHeight, target);
  const [width, height] = resizedSize(loadedWidth, loadedHeight, h, v);
  const swapped = (header.orientation ?? 1) >= 5; // EXIF 5-8 turn the image a quarter
  return swapped ? { width: height, height: width } : { width, height };
}

/** sharp's ResolveShrink for canvas MIN (fit 'outside'): the smaller shrink on both axes, never below one pixel. */
function outsideShrink(width: number, height: number, target: number): { h: number; v: number } {
  const shrink = Math.min(width / target, height / target);
  return { h: Math.min(shrink, width), v: Math.min(shrink, height) };
}

function sizeAfterShrinkOnLoad(header: ImageHeader, shrink: number): [number, number] {
  const { width, height } = header;
  if (header.format === 'jpeg') {
    const factor = jpegShrinkOnLoad(shrink);
    return [Math.floor(width / factor), Math.floor(height / factor)];
  }
  if (header.format === 'webp' && shrink > 1) {
    const scale = 1.0 / shrink;
    return [rint(width * scale), rint(height * scale)];
  }
  return [width, height];
}

/** sharp's JPEG shrink-on-load factor (fastShrinkOnLoad, the default), lowered where libjpeg rounds badly. */
function jpegShrinkOnLoad(shrink: number): number {
  let factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (factor > 1 && Math.trunc(shrink) === factor) factor /= 2;
  return factor;
}

function resizedSize(width: number, height: number, hshrink: number, vshrink: number): [number, number] {
  if (hshrink === 1 && vshrink === 1) return [width, height]; // sharp skips the resize
  // sharp passes 1 / shrink as the scale; vips_resize keeps each axis at 1 pixel at least.
  const hscale = Math.max(1.0 / hshrink, 1.0 / width);
  const vscale = Math.max(1.0 / vshrink, 1.0 / height);
  return [scaledAxis(width, hscale), scaledAxis(height, vscale)];
}

function scaledAxis(size: number, scale: number): number {
  if (scale < 1) return Math.floor(size / (1.0 / scale) + 0.5); // vips_reduce by 1 / scale
  if (scale > 1) return Math.floor(scale * size + 0.5); // vips_affine's output area
  return size;
}

/** C's rint: to nearest, ties to even. */
function rint(x: number): number {
  const nearest = Math.round(x);
  return nearest - x === 0.5 && nearest % 2 !== 0 ? nearest - 1 : nearest;
}
