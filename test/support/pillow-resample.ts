/**
 * Pillow's resample of 8-bit images (its Resample.c), written out here as the tests' reference: each output sample's
 * filter widened by the reduction factor and centred at (i + 0.5) · scale, its weights normalised and made integers
 * of 22 fractional bits, the sum rounded to 8 bits. Resizes run across first, then down.
 */
export type PillowFilter = 'bilinear' | 'bicubic';

const PRECISION = 2 ** 22;

const filters: Record<PillowFilter, { support: number; weight: (x: number) => number }> = {
  bilinear: { support: 1, weight: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    weight: (x) => {
      const t = Math.abs(x);
      const a = -0.5;
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

/** One axis's taps: the first source sample and the integer weights. */
function taps(length: number, size: number, filter: PillowFilter): { first: number; weights: number[] }[] {
  const { support: unit, weight } = filters[filter];
  const scale = length / size;
  const filterScale = Math.max(scale, 1);
  const support = unit * filterScale;
  return Array.from({ length: size }, (_, i) => {
    const centre = (i + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const last = Math.min(Math.trunc(centre + support + 0.5), length);
    const raw = Array.from({ length: last - first }, (_, k) => weight((first + k - centre + 0.5) / filterScale));
    const total = raw.reduce((a, b) => a + b, 0);
    const weights = raw.map((w) => {
      const k = (total !== 0 ? w / total : w) * PRECISION;
      return Math.trunc(k < 0 ? k - 0.5 : k + 0.5);
    });
    return { first, weights };
  });
}

/**
 * One pass of Pillow's resample along x or y of interleaved `channels`-channel `pixels` (`width × height`) to `out`
 * samples; returns the pixels of the new size.
 */
export function pillowPass(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  out: number,
  axis: 'x' | 'y',
  filter: PillowFilter,
): number[] {
  const axisTaps = taps(axis === 'x' ? width : height, out, filter);
  const [outWidth, outHeight] = axis === 'x' ? [out, height] : [width, out];
  const result = new Array<number>(outWidth * outHeight * channels);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const { first, weights } = axisTaps[axis === 'x' ? x : y];
      for (let c = 0; c < channels; c++) {
        let sum = PRECISION / 2;
        weights.forEach((w, k) => {
          const [sx, sy] = axis === 'x' ? [first + k, y] : [x, first + k];
          sum += w * pixels[(sy * width + sx) * channels + c];
        });
        result[(y * outWidth + x) * channels + c] = Math.min(255, Math.max(0, Math.floor(sum / PRECISION)));
      }
    }
  }
  return result;
}

/** Pillow's `Image.resize((outWidth, outHeight), filter)`: across first, then down (an axis of its own size kept). */
export function pillowResize(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
  filter: PillowFilter,
): number[] {
  const across =
    outWidth === width ? Array.from(pixels) : pillowPass(pixels, width, height, channels, outWidth, 'x', filter);
  return outHeight === height ? across : pillowPass(across, outWidth, height, channels, outHeight, 'y', filter);
}
