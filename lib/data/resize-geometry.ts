/**
 * Where the few-shot and FGVC evaluation transform puts an image: torchvision's `Resize(shorter)` (the shorter side
 * to `shorter`, the longer one truncated, `int(shorter * long / short)`) and `CenterCrop(size)` (the offsets
 * `int(round((side - size) / 2.0))`, Python's round taking halves to even), computed from the image's header.
 */

/** What sharp's `metadata()` says of an image, as far as its placement depends on it. */
export interface ImageHeader {
  format?: string;
  /** Stored (not oriented) width and height; of one page for multi-page images. */
  width: number;
  height: number;
  /** The height of one page of a multi-page image (GIF, animated WebP), when sharp gives it. */
  pageHeight?: number;
  /** The EXIF orientation, 1-8. */
  orientation?: number;
  pages?: number;
}

/** The oriented width and height torchvision's `Resize(shorter)` gives the image. */
export function torchvisionResizeSize(header: ImageHeader, shorter: number): { width: number; height: number } {
  const storedHeight = header.pageHeight ?? header.height;
  const swapped = (header.orientation ?? 1) >= 5; // EXIF 5-8 turn the image a quarter
  const [width, height] = swapped ? [storedHeight, header.width] : [header.width, storedHeight];
  if (width <= height) return { width: shorter, height: Math.trunc((shorter * height) / width) };
  return { width: Math.trunc((shorter * width) / height), height: shorter };
}

/** torchvision's CenterCrop offset along a side: Python's round((side - size) / 2.0), halves to even. */
export function centerCropOffset(side: number, size: number): number {
  const half = (side - size) / 2;
  const nearest = Math.round(half);
  return nearest - half === 0.5 && nearest % 2 !== 0 ? nearest - 1 : nearest;
}
