/**
 * Where the few-shot and FGVC evaluation transform puts an image: torchvision's `Resize(shorter)` (the shorter side
 * to `shorter`, the longer one truncated, `int(shorter * long / short)`) and `CenterCrop(size)` (the offsets
 * `int(round((side - size) / 2.0))`, Python's round taking halves to even).
 */

/** The width and height torchvision's `Resize(shorter)` gives an image of `width × height` (oriented). */
export function torchvisionResizeSize(
  width: number,
  height: number,
  shorter: number,
): { width: number; height: number } {
  if (width <= height) return { width: shorter, height: Math.trunc((shorter * height) / width) };
  return { width: Math.trunc((shorter * width) / height), height: shorter };
}

/** torchvision's CenterCrop offset along a side: Python's round((side - size) / 2.0), halves to even. */
export function centerCropOffset(side: number, size: number): number {
  const half = (side - size) / 2;
  const nearest = Math.round(half);
  return nearest - half === 0.5 && nearest % 2 !== 0 ? nearest - 1 : nearest;
}
