// The stronger training augmentation (#20), each piece against an independent computation written here from
// timm's and PIL's definitions: RandomResizedCrop's boxes and bilinear resize, every RandAugment operation at
// several magnitudes and signs, mixup/CutMix's images, λ and soft targets, SoftTargetCrossEntropy in float64;
// then fits with all of it: seeded, counted against the dominant label, and resumed exactly after a SIGKILL.
import fs from 'node:fs';
import path from 'node:path';

import {
  augmentFill,
  crossEntropy,
  DatasetSourceSchema,
  mixupImages,
  randAugmentConfig,
  randAugmentImages,
  randAugmentOp,
  randomErasingImages,
  resizedCropImages,
  saveTensors,
  tensor,
  TensorDataset,
  Trainer,
  type Tensor,
} from '../lib';
import { parseRunConfig } from '../lib/cli/config';
import { runFitChildUntil } from './support/kill-child';
import { pillowResize } from './support/pillow-resample';
import { makeTempDir } from './support/paths';
import { seededRandom, tinyVit, uint8ColourData } from './support/synthetic';
import { sharedTinyModel } from './support/tiny-models';

const temp = makeTempDir('augment');
afterAll(() => temp.cleanup());

/** Random uint8 pixels [count, h, w, c] within [low, high]. */
function pixels(count: number, h: number, w: number, c: number, seed: number, low = 0, high = 255): Uint8Array {
  const random = seededRandom(seed);
  return Uint8Array.from({ length: count * h * w * c }, () => low + Math.floor(random() * (high - low + 1)));
}

// ---------------------------------------------------------------------------------------------------------------
// RandomResizedCrop

/** The box [top, left, height, width] of image `src` ([h, w, c]). */
function cropOf(src: Uint8Array, w: number, c: number, box: number[]): Uint8Array {
  const [top, left, bh, bw] = box;
  const cropped = new Uint8Array(bh * bw * c);
  for (let y = 0; y < bh; y++)
    cropped.set(src.subarray(((top + y) * w + left) * c, ((top + y) * w + left + bw) * c), y * bw * c);
  return cropped;
}

/** The box [top, left, height, width] of image `src` ([h, w, c]) resized to size × size as Pillow resizes it. */
function resizeBox(
  src: Uint8Array,
  w: number,
  c: number,
  box: number[],
  size: number,
  filter: 'bilinear' | 'bicubic' = 'bilinear',
): Uint8Array {
  return Uint8Array.from(pillowResize(cropOf(src, w, c, box), box[3], box[2], c, size, size, filter));
}

function flipRows(image: Uint8Array, size: number, c: number): Uint8Array {
  const out = new Uint8Array(image.length);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let ch = 0; ch < c; ch++) out[(y * size + x) * c + ch] = image[(y * size + size - 1 - x) * c + ch];
  return out;
}

describe('RandomResizedCrop', () => {
  test('boxes lie in the image with timm scale and ratio (or the centre fallback); outputs are bilinear resizes of them', async () => {
    const [n, h, w, c, size] = [160, 18, 24, 3, 10];
    const src = pixels(n, h, w, c, 1);
    using images = tensor(src, [n, h, w, c]);
    const out = await resizedCropImages(images, { size, flip: true, seed: 5 });
    expect(out.images.shape).toEqual([n, size, size, c]);
    const boxes = Array.from(out.boxes.toBigInt64Array(), Number);
    const flipped = Array.from(out.flipped.toUint8Array());
    const got = out.images.toUint8Array();
    const areas: number[] = [];
    let exact = 0;
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const box = boxes.slice(i * 4, i * 4 + 4);
      const [top, left, bh, bw] = box;
      expect(top).toBeGreaterThanOrEqual(0);
      expect(left).toBeGreaterThanOrEqual(0);
      expect(top + bh).toBeLessThanOrEqual(h);
      expect(left + bw).toBeLessThanOrEqual(w);
      // Rounding each side to a whole pixel moves area and ratio by at most half a pixel per side.
      const area = bw * bh;
      expect(area).toBeGreaterThanOrEqual(0.08 * h * w - 0.5 * (bw + bh) - 0.25);
      // The drawn ratio r = √(A·r) / √(A/r) lies between (w − ½)/(h + ½) and (w + ½)/(h − ½).
      expect((bw - 0.5) / (bh + 0.5)).toBeLessThanOrEqual(4 / 3 + 1e-9);
      expect((bw + 0.5) / (bh - 0.5)).toBeGreaterThanOrEqual(3 / 4 - 1e-9);
      areas.push(area / (h * w));
      const expected = resizeBox(src.subarray(i * h * w * c), w, c, box, size);
      const image = flipped[i] ? flipRows(expected, size, c) : expected;
      const actual = got.subarray(i * size * size * c, (i + 1) * size * size * c);
      actual.forEach((v, j) => {
        worst = Math.max(worst, Math.abs(v - image[j]));
        if (v === image[j]) exact++;
      });
    }
    // On the CPU, Pillow's own integer arithmetic: every value (its two 8-bit passes with libtorch's float weights,
    // as on a GPU, were a level apart on about 2 % of these).
    expect(worst).toBe(0);
    expect(exact).toBe(got.length);
    // The draws cover the range: small and nearly whole boxes, and about half of the images flipped.
    expect(Math.min(...areas)).toBeLessThan(0.15);
    expect(Math.max(...areas)).toBeGreaterThan(0.75);
    const flips = flipped.reduce((a, b) => a + b, 0);
    expect(flips).toBeGreaterThan(50);
    expect(flips).toBeLessThan(110);
    // The same seed gives the same boxes and pixels; another seed others.
    const again = await resizedCropImages(images, { size, flip: true, seed: 5 });
    expect(Buffer.compare(again.images.toUint8Array(), got)).toBe(0);
    const other = await resizedCropImages(images, { size, flip: true, seed: 6 });
    expect(Array.from(other.boxes.toBigInt64Array(), Number)).not.toEqual(boxes);
    // An empty batch gives empty results (it failed inside libtorch, PACE_INTERNAL; found by a review)
    using none = tensor(new Uint8Array(0), [0, 8, 8, 3]);
    const empty = await resizedCropImages(none, { size: 4, flip: true, seed: 5 });
    expect([empty.images.shape, empty.boxes.shape, empty.flipped.shape]).toEqual([[0, 4, 4, 3], [0, 4], [0]]);
  });

  test('when no draw fits it falls back to the centre crop at the nearest allowed ratio; a whole box at the same size is the image', async () => {
    const src = pixels(3, 10, 10, 1, 2);
    using images = tensor(src, [3, 10, 10, 1]);
    // ratio ≥ 2 needs w = 2h at the whole area: wider than the image, so all ten draws fail.
    const fallback = await resizedCropImages(images, { size: 4, scale: [1, 1], ratio: [2, 3], seed: 1 });
    expect(Array.from(fallback.boxes.toBigInt64Array(), Number)).toEqual([2, 0, 5, 10, 2, 0, 5, 10, 2, 0, 5, 10]);
    const whole = await resizedCropImages(images, { size: 10, scale: [1, 1], ratio: [1, 1], seed: 1 });
    expect(Array.from(whole.boxes.toBigInt64Array(), Number)).toEqual([0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10]);
    expect(Buffer.compare(whole.images.toUint8Array(), src)).toBe(0);
    await expect(resizedCropImages(images, { size: 4, scale: [0.5, 2] })).rejects.toThrow('the largest scale is 1');
    // any channel count, as on the GPU (the CPU's resize took at most 4 for a while); a whole box: the image again
    const five = pixels(2, 8, 8, 5, 3);
    using many = tensor(five, [2, 8, 8, 5]);
    const same = await resizedCropImages(many, { size: 8, scale: [1, 1], ratio: [1, 1], seed: 1 });
    expect(same.images.shape).toEqual([2, 8, 8, 5]);
    expect(Buffer.compare(same.images.toUint8Array(), five)).toBe(0);
    // A ratio so far from the image's that the fallback's side rounds to 0 pixels (timm's crop then fails; here it
    // failed at the resize naming an image [0, 10, 1]): the box keeps one pixel. 10 / 40 = 0.25 rounds to 0.
    const thin = await resizedCropImages(images, { size: 4, scale: [1, 1], ratio: [40, 40], seed: 1 });
    expect(Array.from(thin.boxes.toBigInt64Array(), Number)).toEqual([4, 0, 1, 10, 4, 0, 1, 10, 4, 0, 1, 10]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Interpolation: bicubic (DeiT's and NOAH's --train-interpolation) and random, against Pillow's own pixels

/** From test/reference/bicubic_pillow.py (Pillow 9.4): each case's output pixels, row-major, base64. */
const PILLOW_BICUBIC: Record<string, string> = {
  'rgb-rotate-18':
    'fHRofHRofHRox/8A9NMylSCALcF//IST0ZhYRny+fHRoMWajXJLboZm8aEcugDu8ACL/Sa+KXfKI38mRRn+SfHRoVqbtn/9p+FJUVleTFFx9JUVyhTyFOi6UWauKHJiKswlP5LKkmWBBL0unhZLgAKyoYvF+3dOvrZaMAGO/UAjh8K1BlIpCalSPRfiWxsCimH+pMm+kMYT1ffuKAFZaSgCpmrsdI3HSccxntZw/ccaPdLLUxovOlG2yIG+EALGZQWmfo0VTuHHI1mg9rrcGlaRLdqOK3dA9cqvgmXvPzpOXfAfV2n5XfHRoV0tkQ6t8yB68rRGZVV/NicVZb4SmafaMQA8+krkAfHRoRbv118VYe9PSu4etrRiWxKcA06kCfHRofHRofHRo',
  'rgb-rotate-minus-18':
    'fHRor+mQr77zoPtm0o6Zjp8+xf8K/3cvfHRofHRofHRofHRoppE7xCpIQW9PtwmiHg54fj3Ebya8HnF9IGGbP4bNOpb5QnicLrSYa76ZgJfjCtaJAwCOAFnKev93/4aOipuK1EaGsc4vr51GlsiykHizAK+coNVjgjuFPpiEzt+ExH6IaT1blJAzluIXd82asZjBMm+klsrhkJCbay2Sdf1/N4CQWtegjIqLnyGucaGPsa2wrW60KaS+p+lzAGC+G2W/ayFfz20pfNLQ0yiVrVh3iLx/sZzRJ2yEAJxrKACenky0/4ExXzQE5MlghIbXeRixicBZUIf8pW2FPM/XJCJ6la4ZfHRofHRofHRofHRo8j4As+IAj6B7o8aOeAbS2xx3oNN/fHRo',
  'rgb-shearx-0.21':
    'FEl+PHGmYZbOhrvVq+MA0+o62hVfBU+EP3SpZJnOhrvweqvsoum81b8rxQhfLAB9SRf0AHvZff96/5F8oZZxS4/b+48+gks7QDSrZKPnCal7ECd4ajKOSq2CteWNr3uffHRoWESTGdCZyNOKZ3a3ALWXy/V6ZnOYYSaTSOOIFoV7fHRok+RAsJZRb7zFw5qtN26fWaL979uKEIOpEi/k3CtZfHRotY0dmdwYermMeJ3axnm4G36eFMt3EyBwhDG7yf8ufHRoaJh6txKygHKU288zhKHlj2eVAIeWLJefZzUouPMAfHRomcupv2Gulw+0YY6cUqDCtbCxonTOswapwHinfHRofHRo1JomcNDuxBl8t7gDw5YnTP6KOyVWmZoAX5WnfHRofHRo',
  'rgb-sheary-minus-0.12':
    'DEF2KV+VT4HZbsb9fHRofHRofHRofHRofHRofHRofHRoYZbZfsv7p+Zg2m6HcVkqrq9wuSaAFlx+NW2jUpLTiL3xyv82+lNjU4s1rAuyJWSLMQC/ADH5PvuC+56Wt5lfaqDYJ1yBdkCPBc6MuXS8HdrAAHdgbGx8eDmFQfWJ/5iKSXa1crTqg9hNhq17qMezeHKxF8aS5emcQlmdckmLT/9/AFmI2xJHyoEao9QQeNGMm53RdWSvQJL65uWDB3qvFEzVsxdbOF2SG7OB3U9DTHe8tcRixpDOTm2ZCMeBBzthZRPW2MNJg8b7zchbg4bvtAuesY1iXrC8upPGKkiCKeCyNAlgsOsA4yhdgkMXuMGGq3W3eBW2kcpBVYLV68qHbTf61w56ncio',
  'rgb-translatex-0.225':
    'baL1kseCt/8A+pdGhxRrBFuQS4C1dKneh7zxfHRofHRo66Q0oQFYOwONNhD/AKDEnu6D/5NskJWETY/ZfHRofHRoOTuiZ5bsDLZ+DSR1ZzWPUaSBqOqMu32eI2KpfHRofHRojOyOp4OoAJmpjvZ4p5qPQSCaXrCIGcB+Djh2fHRofHRoiqGWn7TKgXeZJn/bxdHLjbuEAEfcgCGi/yw+fHRofHRoktouZrOvq5TXlme0E66VBKBiKgCdoHiSyv8sfHRofHRonRHFnIJzxcpOlqHfelqPBaCfKnaXc08gt/AAfHRofHRorHHCqwukVoGsXKqxoabCtoO9oge8zWmZgs7yfHRofHRopty8kE7D02cIucUPd9F3J312g0cAgLtiQHfvfHRofHRo',
  'rgb-translatey-minus-0.405':
    'fHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRofHRoKV6oUpjMgryRtomufHgkratylyaaGZh/jXmfgJWad63jp9yh16PAiMgm1hKHI0OEMAC+AC3uWNmA0dSP/pdcTn+8kscxySZUBJNxlFPbI+y/AHphioNyXiONPr6FvdSQF12UImzHWZmBVNuSycucZW21F8SS2Oawe32ZUkSfBMClWi5kuH2yuMgbuassasmqq53Gd2SwMIfvvfiBAF6SOgTt+nBJ',
  'grey-rotate-18': 'fH+whmV8gvF/D0IEsmhYdcLDvw3IunOGUKmvg599mo651pq3fCWmJCx8',
  'grey-rotate-minus-18': 'fHmakMd8/6TGtzePcBpLJFoQsbbRorxvT8iEh3vaj6DKpXtffBI2sZJ8',
  'grey-shearx-0.21': 'R2+Uud7/qeq7AAcbayk9mp18SrfIdrJ84peClG98jN6xk358mRF1xpJ8',
  'grey-sheary-minus-0.12': 'P11/xnx8lM/nY16t/SCPBl4AWje0fcxwstmgnHPBEH7XrpZjX7Jjd62M',
  'grey-translatex-0.225': 'eJ3C6v987bUACBt8DFdtwhZ8iduQitp8zX+JiGd8pt2sjX18mxFyx5J8',
  'grey-translatey-minus-0.405': 'fHx8fHx8fHx8fHx8fHx8fHx8UH2hnLDWvLHmFRYA5wByPuxPVH/QuGzO',
  'crop-2-3-13x15-to-6':
    'TomraZe2g6mtZpSnjph0lJxfoX6Ud5mhRGyJbWxdi3aGcX9fbU2Ui4x+hXiOmpVzcFyie3pvbY5lfop7mnqEmHVncJdudn9wenlkgnl5kFqLh3xzlnN/jm+Fi4OLh3t/prNiZX6RqoJlXq+y',
  'crop-5-1-7x9-to-16':
    'SgAxc0Aru+wcvLcAoFUAd5SUfcPm359jzYNPR3SyH6+5JvOSFp1yHzh1Zx/Qjxb/QxdGY1U8m9QnoZ0UlEUfhH2Yj63S0KB4w4xmZ3ijP6KpMdeSG558HlV9Wja7fCjfLYN7NoljS5c/X1llehucp0Sgv3mgrKSxqqekuoN9joF/SJCUJaOSG6OMN3KISFWGK9ujH7SJEGllJyqtWgH4thKr2kOAjZnOlLLF74xlzGxkbFyRNZ+oGs+jKJVhM3A7YtSJTrmTK4GnJEm2ORu/hQm8rxutjWKPjYmEsoyMv4KEr3V+VoSvGofFWVl0gj5DnqpriKuYXqffNn2rIUduRxXIcwbclTI9j2AvZomzmqKr4KRwcWe0ISnjmBWO4g9bo3WSl4yofLHKTp2tJm+MLzK9VB+zm18gpYIScYSNhamdrceEX2XENxDktjGA/0tEhznZjGO8kauNbbKxQZjaK16lQldfoLcdwsUSpYBAdad2Q+WrOXDXWhjRxH1c/74ZXkzgcGTAj5KMgKi1X6rgNoqUOINHiLcks7sTsY0WcrVmJurMRG/WhBupzZ898vABIrKoPpO1cWPJiHu9haeiUrqHNalmUGI4c2IWl6wIfdVqUdfqgWTAux1oz5od1+cABuiLLaisdD7emWCrnKtlY9B9OrKEQiNKXSgohsIlfuOAabrtp1Wj3B9BxpAlttUbHLywWYOuwCmjw2xlmM0xWb95RoKcixNSoy5PisuUZNS8SovDnD943iJArYVzjMGTR4/GiWen9ylq33ctldURWaZvWF+lxBli2T15ksHmWbreOmqYijBgyiJYkHnBaqz8g7F7l5F7ulh2wGFHsYEgh5xScY6BjDeQmjWbl4ihjJmagH6MjTyGkRyVcm3VX572u+YemMtLYJKVkUR50RpAvJczidJUN1rAPim0m0gzzHs91aONlFG8VBTXWmPRYZbL1PoAmuI2PaqhfzmL3gBM0pUmk+xBFmnVGSTAnS0J5m4Y+LGMllnSOhDzTl/SYJK8',
};

/** The reference script's test image: ((x·37 + y·91 + c·53 + seed·17) xor (x·y·13)) mod 256. */
function formulaImage(w: number, h: number, c: number, seed: number): Uint8Array {
  const out = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++)
        out[(y * w + x) * c + ch] = ((x * 37 + y * 91 + ch * 53 + seed * 17) ^ (x * y * 13)) % 256;
  return out;
}

describe('interpolation: bicubic and random, as timm with Pillow', () => {
  const pillow = (name: string) => new Uint8Array(Buffer.from(PILLOW_BICUBIC[name], 'base64'));

  test("RandAugment's rotate, shear and translate with bicubic equal Pillow's Image.transform, RGB and grey", async () => {
    const fill = [124, 116, 104];
    const cases: [string, string, number, boolean][] = [
      ['rotate-18', 'Rotate', 6, false],
      ['rotate-minus-18', 'Rotate', 6, true],
      ['shearx-0.21', 'ShearX', 7, false],
      ['sheary-minus-0.12', 'ShearY', 4, true],
      ['translatex-0.225', 'TranslateXRel', 5, false],
      ['translatey-minus-0.405', 'TranslateYRel', 9, true],
    ];
    for (const [label, w, h, c, seed] of [
      ['rgb', 11, 9, 3, 1],
      ['grey', 6, 7, 1, 4],
    ] as const) {
      using image = tensor(formulaImage(w, h, c, seed), [h, w, c]);
      for (const [name, op, magnitude, negate] of cases) {
        using bicubic = await randAugmentOp(image, op, { magnitude, negate, fill, interpolation: 'bicubic' });
        const expected = pillow(`${label}-${name}`);
        expect([label, name, Buffer.compare(bicubic.toUint8Array(), expected)]).toEqual([label, name, 0]);
        // and it is not the bilinear result (the check would pass a filter that was never switched)
        using bilinear = await randAugmentOp(image, op, { magnitude, negate, fill });
        expect([label, name, Buffer.compare(bilinear.toUint8Array(), expected) === 0]).toEqual([label, name, false]);
      }
    }
    using image = tensor(formulaImage(6, 7, 1, 4), [7, 6, 1]);
    await expect(randAugmentOp(image, 'Rotate', { magnitude: 5, interpolation: 'random' as never })).rejects.toThrow(
      'options.interpolation',
    );
  });

  test("the resized crop with bicubic is Pillow's crop and bicubic resize (the test's resampler checked against Pillow)", async () => {
    // The TypeScript resampler of test/support equals Pillow on these two crops, a shrink and an enlargement ...
    const big = formulaImage(23, 19, 3, 2);
    const crop = (top: number, left: number, bh: number, bw: number, size: number) =>
      Uint8Array.from(pillowResize(cropOf(big, 23, 3, [top, left, bh, bw]), bw, bh, 3, size, size, 'bicubic'));
    expect(Buffer.compare(crop(2, 3, 13, 15, 6), pillow('crop-2-3-13x15-to-6'))).toBe(0);
    expect(Buffer.compare(crop(5, 1, 7, 9, 16), pillow('crop-5-1-7x9-to-16'))).toBe(0);
    // ... and every crop of a fit's resized crop with bicubic equals it.
    const [n, h, w, c, size] = [40, 24, 30, 3, 12];
    const src = pixels(n, h, w, c, 9);
    using images = tensor(src, [n, h, w, c]);
    const out = await resizedCropImages(images, { size, seed: 2, interpolation: 'bicubic' });
    const boxes = Array.from(out.boxes.toBigInt64Array(), Number);
    const got = out.images.toUint8Array();
    for (let i = 0; i < n; i++) {
      const expected = resizeBox(src.subarray(i * h * w * c), w, c, boxes.slice(4 * i, 4 * i + 4), size, 'bicubic');
      expect([i, Buffer.compare(got.subarray(i * size * size * c, (i + 1) * size * size * c), expected)]).toEqual([
        i,
        0,
      ]);
    }
  });

  test('random picks bilinear or bicubic per crop and per operation, the other draws unchanged', async () => {
    const [n, h, w, c, size] = [40, 24, 30, 3, 12];
    using images = tensor(pixels(n, h, w, c, 10), [n, h, w, c]);
    const crops = await Promise.all(
      (['bilinear', 'bicubic', 'random'] as const).map((interpolation) =>
        resizedCropImages(images, { size, flip: true, seed: 4, interpolation }),
      ),
    );
    const [bilinear, bicubic, random] = crops.map((crop) => crop.images.toUint8Array());
    // the same boxes and flips: the filter's draw comes after them
    for (const crop of crops.slice(1)) {
      expect(Array.from(crop.boxes.toBigInt64Array())).toEqual(Array.from(crops[0].boxes.toBigInt64Array()));
      expect(Array.from(crop.flipped.toUint8Array())).toEqual(Array.from(crops[0].flipped.toUint8Array()));
    }
    const per = size * size * c;
    const image = (all: Uint8Array, i: number) => all.subarray(i * per, (i + 1) * per);
    let linear = 0;
    let cubic = 0;
    for (let i = 0; i < n; i++) {
      const isLinear = Buffer.compare(image(random, i), image(bilinear, i)) === 0;
      const isCubic = Buffer.compare(image(random, i), image(bicubic, i)) === 0;
      expect([i, isLinear || isCubic]).toEqual([i, true]);
      if (isLinear && !isCubic) linear++;
      if (isCubic && !isLinear) cubic++;
    }
    expect(linear).toBeGreaterThan(5); // about half each of 40
    expect(cubic).toBeGreaterThan(5);
    // RandAugment: each image is the bilinear or the bicubic run's (one geometric op each), both occurring
    const config = 'rand-n1-m9-mstd0-p1.0';
    const augmented = await Promise.all(
      (['bilinear', 'bicubic', 'random'] as const).map(async (interpolation) =>
        (await randAugmentImages(images, { config, seed: 3, interpolation })).toUint8Array(),
      ),
    );
    const whole = h * w * c;
    const sides = new Set<string>();
    for (let i = 0; i < n; i++) {
      const [a, b, r] = augmented.map((all) => all.subarray(i * whole, (i + 1) * whole));
      const isLinear = Buffer.compare(r, a) === 0;
      const isCubic = Buffer.compare(r, b) === 0;
      expect([i, isLinear || isCubic]).toEqual([i, true]);
      if (isLinear !== isCubic) sides.add(isLinear ? 'bilinear' : 'bicubic');
    }
    expect([...sides].sort()).toEqual(['bicubic', 'bilinear']);
    await expect(randAugmentImages(images, { config, interpolation: 'nearest' as never })).rejects.toThrow(
      'options.interpolation',
    );
  });
});

/** `n` random grey images `[n, side, side, 1]` and their RGB copies, each level on all three channels. */
function greyImagesAndRgbCopies(n: number, side: number, seed: number) {
  const random = seededRandom(seed);
  const levels = Uint8Array.from({ length: n * side * side }, () => Math.floor(random() * 256));
  const rgbLevels = Uint8Array.from({ length: levels.length * 3 }, (_, i) => levels[Math.floor(i / 3)]);
  return { levels, grey: tensor(levels, [n, side, side, 1]), rgb: tensor(rgbLevels, [n, side, side, 3]) };
}

test("a batch's RandAugment on grey images with a colour fill augments them as RGB, as timm converts them; a grey fill keeps them grey", async () => {
  // Bug: what rotations and shears uncover took the fill's first channel on all three channels.
  const [n, side] = [6, 12];
  const copies = greyImagesAndRgbCopies(n, side, 9);
  using grey = copies.grey;
  using rgb = copies.rgb;
  const { levels } = copies;
  const config = 'rand-n2-m9-mstd0-p1.0';
  const fill = [124, 116, 104];
  using fromGrey = await randAugmentImages(grey, { config, fill, seed: 5 });
  using fromRgb = await randAugmentImages(rgb, { config, fill, seed: 5 });
  expect(fromGrey.shape).toEqual([n, side, side, 3]);
  expect(Buffer.from(fromGrey.toUint8Array()).equals(Buffer.from(fromRgb.toUint8Array()))).toBe(true);
  // one operation is PIL's on the image's own mode: grey stays grey, filled with fill[0]
  using image = tensor(levels.subarray(0, side * side), [side, side, 1]);
  using rotated = await randAugmentOp(image, 'Rotate', { magnitude: 9, fill });
  expect(rotated.shape).toEqual([side, side, 1]);
  expect(rotated.toUint8Array()[0]).toBe(124); // a corner the rotation uncovers
  // a grey fill: grey images stay grey, the level each RGB copy's channels share
  using greyFilled = await randAugmentImages(grey, { config, fill: [128, 128, 128], seed: 5 });
  using rgbFilled = await randAugmentImages(rgb, { config, fill: [128, 128, 128], seed: 5 });
  expect(greyFilled.shape).toEqual([n, side, side, 1]);
  const everyThird = rgbFilled.toUint8Array().filter((_, i) => i % 3 === 0);
  expect(Buffer.from(greyFilled.toUint8Array()).equals(Buffer.from(everyThird))).toBe(true);
});

// ---------------------------------------------------------------------------------------------------------------
// RandAugment: each operation as PIL computes it (timm applies them to PIL images)

interface Img {
  data: Uint8Array;
  h: number;
  w: number;
  c: number;
}
const f32 = Math.fround;
const luma = (d: Uint8Array, i: number) => (d[i] * 19595 + d[i + 1] * 38470 + d[i + 2] * 7471 + 0x8000) >> 16;

function mapValues(img: Img, table: (v: number, channel: number) => number): Uint8Array {
  return img.data.map((v, i) => table(v, i % img.c));
}

function histograms(img: Img): number[][] {
  const h = Array.from({ length: img.c }, () => new Array<number>(256).fill(0));
  img.data.forEach((v, i) => h[i % img.c][v]++);
  return h;
}

function autoContrast(img: Img): Uint8Array {
  const tables = histograms(img).map((h) => {
    const lo = h.findIndex((n) => n > 0);
    const hi = 255 - [...h].reverse().findIndex((n) => n > 0);
    if (hi <= lo) return Array.from({ length: 256 }, (_, v) => v);
    const scale = 255 / (hi - lo);
    const offset = -lo * scale;
    return Array.from({ length: 256 }, (_, v) => Math.min(255, Math.max(0, Math.trunc(v * scale + offset))));
  });
  return mapValues(img, (v, ch) => tables[ch][v]);
}

function equalize(img: Img): Uint8Array {
  const tables = histograms(img).map((h) => {
    const used = h.filter((n) => n > 0);
    const step = used.length <= 1 ? 0 : Math.floor((used.reduce((a, b) => a + b, 0) - used[used.length - 1]) / 255);
    if (step === 0) return Array.from({ length: 256 }, (_, v) => v);
    let n = Math.floor(step / 2);
    return h.map((count) => {
      const value = Math.min(255, Math.floor(n / step));
      n += count;
      return value;
    });
  });
  return mapValues(img, (v, ch) => tables[ch][v]);
}

/** Image.blend(degenerate, image, factor) in PIL's float32 arithmetic. */
function blend(img: Img, degenerate: (i: number) => number, factor: number): Uint8Array {
  const alpha = f32(factor);
  if (alpha === 1) return img.data.slice();
  return img.data.map((v, i) => {
    const d = degenerate(i);
    if (alpha === 0) return d;
    const mixed = f32(d + f32(alpha * (v - d)));
    return alpha >= 0 && alpha <= 1 ? Math.trunc(mixed) : mixed <= 0 ? 0 : mixed >= 255 ? 255 : Math.trunc(mixed);
  });
}

function smooth(img: Img): Uint8Array {
  const { data, h, w, c } = img;
  const out = data.slice();
  const side = f32(1 / 13);
  const centre = f32(5 / 13);
  const at = (y: number, x: number, ch: number) => data[(y * w + x) * c + ch];
  const rowSum = (y: number, x: number, ch: number, middle: number) =>
    f32(f32(f32(at(y, x - 1, ch) * side) + f32(at(y, x, ch) * middle)) + f32(at(y, x + 1, ch) * side));
  for (let y = 1; y < h - 1; y++)
    for (let x = 1; x < w - 1; x++)
      for (let ch = 0; ch < c; ch++) {
        let sum = f32(0.5);
        sum = f32(sum + rowSum(y + 1, x, ch, side));
        sum = f32(sum + rowSum(y, x, ch, centre));
        sum = f32(sum + rowSum(y - 1, x, ch, side));
        out[(y * w + x) * c + ch] = Math.trunc(Math.min(255, Math.max(0, sum)));
      }
  return out;
}

/** Image.transform(size, AFFINE, m, BILINEAR, fillcolor) as PIL's generic transform and bilinear filter. */
function affine(img: Img, m: number[], fill: number[]): Uint8Array {
  const { data, h, w, c } = img;
  const out = new Uint8Array(data.length);
  const clamp = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
      const yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
      for (let ch = 0; ch < c; ch++) {
        const o = (y * w + x) * c + ch;
        if (xin < 0 || xin >= w || yin < 0 || yin >= h) {
          out[o] = fill[ch];
          continue;
        }
        const xs = xin - 0.5;
        const ys = yin - 0.5;
        const x0 = Math.floor(xs);
        const y0 = Math.floor(ys);
        const dx = xs - x0;
        const dy = ys - y0;
        const px = (yy: number, xx: number) => data[(yy * w + clamp(xx, w)) * c + ch];
        const top = clamp(y0, h);
        const a = px(top, x0);
        const upper = a + (px(top, x0 + 1) - a) * dx;
        let lower = upper;
        if (y0 + 1 >= 0 && y0 + 1 < h) {
          const p = px(y0 + 1, x0);
          lower = p + (px(y0 + 1, x0 + 1) - p) * dx;
        }
        out[o] = Math.trunc(upper + (lower - upper) * dy);
      }
    }
  return out;
}

/** PIL's Image.rotate(degrees) matrix (about the centre, no expand). */
function rotation(degrees: number, w: number, h: number): number[] {
  let turned = degrees % 360;
  if (turned < 0) turned += 360;
  const angle = -(turned * (Math.PI / 180));
  const r15 = (v: number) => Number(v.toFixed(15));
  const m = [r15(Math.cos(angle)), r15(Math.sin(angle)), 0, r15(-Math.sin(angle)), r15(Math.cos(angle)), 0];
  const [cx, cy] = [w / 2, h / 2];
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return m;
}

/** timm's auto_augment.py: the operation at magnitude m (already noised and clipped) and sign. */
function referenceOp(img: Img, op: string, m: number, negate: boolean, fill: number[]): Uint8Array {
  const level = m / 10;
  const sign = negate ? -1 : 1;
  const increasing = Math.max(0.1, 1 + sign * (level * 0.9));
  const plain = level * 1.8 + 0.1;
  const enhance = op.endsWith('Increasing') ? increasing : plain;
  const { data, c } = img;
  switch (op) {
    case 'AutoContrast':
      return autoContrast(img);
    case 'Equalize':
      return equalize(img);
    case 'Invert':
      return data.map((v) => 255 - v);
    case 'Rotate': {
      const degrees = sign * (level * 30);
      return degrees % 360 === 0 ? data.slice() : affine(img, rotation(degrees, img.w, img.h), fill);
    }
    case 'Posterize':
    case 'PosterizeIncreasing': {
      const bits = op === 'Posterize' ? Math.trunc(level * 4) : 4 - Math.trunc(level * 4);
      return bits >= 8 ? data.slice() : data.map((v) => v & ~(2 ** (8 - bits) - 1));
    }
    case 'Solarize':
    case 'SolarizeIncreasing': {
      const t = Math.min(256, Math.trunc(level * 256));
      const threshold = op === 'Solarize' ? t : 256 - t;
      return data.map((v) => (v < threshold ? v : 255 - v));
    }
    case 'SolarizeAdd': {
      const add = Math.min(128, Math.trunc(level * 110));
      return data.map((v) => (v < 128 ? Math.min(255, v + add) : v));
    }
    case 'Color':
    case 'ColorIncreasing':
      if (c === 1) return data.slice();
      return blend(img, (i) => luma(data, i - (i % 3)), enhance);
    case 'Contrast':
    case 'ContrastIncreasing': {
      let sum = 0;
      for (let i = 0; i < data.length; i += c) sum += c === 3 ? luma(data, i) : data[i];
      const mean = Math.trunc(sum / (data.length / c) + 0.5);
      return blend(img, () => mean, enhance);
    }
    case 'Brightness':
    case 'BrightnessIncreasing':
      return blend(img, () => 0, enhance);
    case 'Sharpness':
    case 'SharpnessIncreasing': {
      const smoothed = smooth(img);
      return blend(img, (i) => smoothed[i], enhance);
    }
    case 'ShearX':
      return affine(img, [1, sign * (level * 0.3), 0, 0, 1, 0], fill);
    case 'ShearY':
      return affine(img, [1, 0, 0, sign * (level * 0.3), 1, 0], fill);
    case 'TranslateXRel':
      return affine(img, [1, 0, sign * (level * 0.45) * img.w, 0, 1, 0], fill);
    case 'TranslateYRel':
      return affine(img, [1, 0, 0, 0, 1, sign * (level * 0.45) * img.h], fill);
  }
  throw new Error(`no reference for ${op}`);
}

describe('RandAugment', () => {
  const increasing = [
    'AutoContrast',
    'Equalize',
    'Invert',
    'Rotate',
    'PosterizeIncreasing',
    'SolarizeIncreasing',
    'SolarizeAdd',
    'ColorIncreasing',
    'ContrastIncreasing',
    'BrightnessIncreasing',
    'SharpnessIncreasing',
    'ShearX',
    'ShearY',
    'TranslateXRel',
    'TranslateYRel',
  ];
  const plain = increasing.map((op) => op.replace('Increasing', ''));

  test("timm's config strings: n, m, mstd (uniform above 100), mmax, p, inc; bad sections are named", () => {
    expect(randAugmentConfig('rand-m9-mstd0.5-inc1')).toEqual({
      numLayers: 2,
      magnitude: 9,
      magnitudeStd: 0.5,
      magnitudeMax: 10,
      probability: 0.5,
      increasing: true,
      ops: increasing,
    });
    expect(randAugmentConfig('rand-n3-m7-p0.8-mmax15')).toMatchObject({
      numLayers: 3,
      magnitude: 7,
      magnitudeStd: 0,
      magnitudeMax: 15,
      probability: 0.8,
      increasing: false,
      ops: plain,
    });
    expect(randAugmentConfig('rand').magnitude).toBe(10);
    expect(randAugmentConfig('rand-mstd101').magnitudeStd).toBe(Infinity);
    expect(() => randAugmentConfig('augmix-m3')).toThrow("starts with 'rand'");
    expect(() => randAugmentConfig('rand-tweights')).toThrow('weighted and 3-Augment operation sets are not offered');
    expect(() => randAugmentConfig('rand-q1')).toThrow("RandAugment section 'q1' is not one of");
    expect(() => randAugmentConfig('rand-m9.5')).toThrow("RandAugment section 'm9.5' needs a whole number");
    expect(() => randAugmentConfig('rand-p2')).toThrow('probability (p) must be in [0, 1]');
    // Bug: accepted, and each image then took 10^8 operations: the fit stalled with no error.
    expect(() => randAugmentConfig('rand-n100000000')).toThrow(
      "RandAugment's number of operations (n) must be at most 100 (timm's configs use 2 or 3); got 100000000",
    );
    expect(randAugmentConfig('rand-n100').numLayers).toBe(100);
  });

  test('every operation of both sets equals PIL arithmetic at magnitudes 0-10, both signs, on RGB and grey images', async () => {
    const fill = [124, 116, 104]; // ImageNet's mean × 255, rounded (timm's img_mean)
    expect(augmentFill([0.485, 0.456, 0.406])).toEqual(fill);
    expect(augmentFill([0.5, 0.5, 0.5])).toEqual([128, 128, 128]); // round(127.5) is 128, the even neighbour
    const images: Img[] = [
      { data: pixels(1, 9, 11, 3, 3, 30, 220), h: 9, w: 11, c: 3 },
      { data: pixels(1, 7, 6, 1, 4), h: 7, w: 6, c: 1 },
      { data: new Uint8Array(5 * 5 * 3).fill(77), h: 5, w: 5, c: 3 }, // flat: autocontrast and equalize keep it
      // Large enough for equalize to act (PIL's step is the pixel count over 255), values skewed towards dark.
      { data: pixels(1, 24, 20, 3, 5).map((v) => Math.floor((v * v) / 300) + 10), h: 24, w: 20, c: 3 },
    ];
    let compared = 0;
    const mismatches: string[] = [];
    for (const img of images) {
      using input = tensor(img.data, [img.h, img.w, img.c]);
      for (const op of [...new Set([...increasing, ...plain])]) {
        for (const magnitude of [0, 2.5, 5, 7.3, 9, 10]) {
          for (const negate of [false, true]) {
            using out = await randAugmentOp(input, op, { magnitude, negate, fill });
            const expected = referenceOp(img, op, magnitude, negate, fill);
            const actual = out.toUint8Array();
            compared++;
            if (Buffer.compare(actual, expected) !== 0) mismatches.push(`${op} m${magnitude} ${negate} c${img.c}`);
          }
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect(compared).toBe(4 * 21 * 6 * 2); // 21 operations in the two sets
    // The operations are not identities at these magnitudes: the check above would catch a no-op.
    using rgb = tensor(images[3].data, [24, 20, 3]);
    const unchanged: string[] = [];
    for (const op of increasing) {
      using out = await randAugmentOp(rgb, op, { magnitude: 9, fill });
      if (Buffer.compare(out.toUint8Array(), images[3].data) === 0) unchanged.push(op);
    }
    expect(unchanged).toEqual([]);
  });

  test('a batch applies drawn operations: with p = 1 and one layer each image is one operation of the set; p = 0 keeps the images; seeded', async () => {
    const [n, h, w] = [24, 8, 9];
    const src = pixels(n, h, w, 3, 7);
    using images = tensor(src, [n, h, w, 3]);
    const fill = [128, 128, 128];
    using out = await randAugmentImages(images, { config: 'rand-n1-m9-p1-inc1', fill, seed: 4 });
    const got = out.toUint8Array();
    const used = new Set<string>();
    for (let i = 0; i < n; i++) {
      const img: Img = { data: src.subarray(i * h * w * 3, (i + 1) * h * w * 3), h, w, c: 3 };
      const actual = got.subarray(i * h * w * 3, (i + 1) * h * w * 3);
      const matches = increasing.flatMap((op) =>
        [false, true]
          .filter((negate) => Buffer.compare(referenceOp(img, op, 9, negate, fill), actual) === 0)
          .map(() => op),
      );
      expect(matches.length).toBeGreaterThan(0);
      matches.forEach((op) => used.add(op));
    }
    expect(used.size).toBeGreaterThan(6); // 24 uniform draws over 15 operations
    using same = await randAugmentImages(images, { config: 'rand-n1-m9-p1-inc1', fill, seed: 4 });
    expect(Buffer.compare(same.toUint8Array(), got)).toBe(0);
    using other = await randAugmentImages(images, { config: 'rand-n1-m9-p1-inc1', fill, seed: 5 });
    expect(Buffer.compare(other.toUint8Array(), got)).not.toBe(0);
    using none = await randAugmentImages(images, { config: 'rand-n4-m9-p0', fill, seed: 4 });
    expect(Buffer.compare(none.toUint8Array(), src)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Mixup / CutMix and the soft-target loss

/** timm's mixup_target, in float64. */
function softTargets(labels: number[], classes: number, lambda: number, smoothing: number): number[] {
  const off = smoothing / classes;
  const on = 1 - smoothing + off;
  const rows: number[] = [];
  labels.forEach((label, i) => {
    const other = labels[labels.length - 1 - i];
    for (let k = 0; k < classes; k++) {
      rows.push((k === label ? on : off) * lambda + (k === other ? on : off) * (1 - lambda));
    }
  });
  return rows;
}

describe('RandomErasing', () => {
  const [b, c, h, w] = [8, 3, 20, 24];
  const random = seededRandom(21);
  const x = Float32Array.from({ length: b * c * h * w }, () => random() * 4 - 2);
  const at = (n: number, ch: number, y: number, xx: number) => ((n * c + ch) * h + y) * w + xx;
  const inBox = (box: number[], n: number, y: number, xx: number) =>
    box[0] === n && y >= box[1] && y < box[1] + box[3] && xx >= box[2] && xx < box[2] + box[4];

  test('boxes of 2-33 % of the image at aspect 0.3-3.3 inside it, noise in them and the rest untouched; seeded', async () => {
    using images = tensor(x, [b, c, h, w]);
    const noise: number[] = [];
    let changedOutside = 0;
    for (let seed = 0; seed < 20; seed++) {
      const out = await randomErasingImages(images, { prob: 1, seed });
      expect(out.boxes.map((box) => box[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]); // one box each (a try fits)
      const got = out.images.toFloat32Array();
      for (const [, top, left, bh, bw] of out.boxes) {
        expect(top >= 0 && left >= 0 && top + bh <= h && left + bw <= w && bh < h && bw < w).toBe(true);
        // h and w are rounded from √(area·aspect) and √(area / aspect): within half a pixel of the ranges
        expect((bh + 0.5) * (bw + 0.5)).toBeGreaterThanOrEqual(0.02 * h * w);
        expect((bh - 0.5) * (bw - 0.5)).toBeLessThanOrEqual((h * w) / 3);
        expect((bh + 0.5) / Math.max(bw - 0.5, 0.5)).toBeGreaterThanOrEqual(0.3);
        expect((bh - 0.5) / (bw + 0.5)).toBeLessThanOrEqual(1 / 0.3);
      }
      for (let n = 0; n < b; n++)
        for (let ch = 0; ch < c; ch++)
          for (let y = 0; y < h; y++)
            for (let xx = 0; xx < w; xx++) {
              const i = at(n, ch, y, xx);
              if (out.boxes.some((box) => inBox(box, n, y, xx))) noise.push(got[i]);
              else if (got[i] !== x[i]) changedOutside++;
            }
      if (seed === 0) {
        const again = await randomErasingImages(images, { prob: 1, seed });
        expect(again.boxes).toEqual(out.boxes);
        expect(Buffer.from(again.images.toFloat32Array().buffer).equals(Buffer.from(got.buffer))).toBe(true);
      }
    }
    expect(changedOutside).toBe(0);
    expect(Buffer.from(images.toFloat32Array().buffer).equals(Buffer.from(x.buffer))).toBe(true); // a copy is erased
    // per-pixel noise is N(0, 1): tens of thousands of values, mean and variance well within 0.05
    const mean = noise.reduce((s, v) => s + v, 0) / noise.length;
    const variance = noise.reduce((s, v) => s + (v - mean) ** 2, 0) / noise.length;
    expect(noise.length).toBeGreaterThan(10000);
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });

  test("the box's area is uniform in [2 %, 33 %] and its log aspect uniform, as timm draws them", async () => {
    using image = tensor(new Float32Array(3 * 224 * 224), [1, 3, 224, 224]);
    const areas: number[] = [];
    const logAspects: number[] = [];
    for (let seed = 0; seed < 400; seed++) {
      const [box] = (await randomErasingImages(image, { prob: 1, fill: 'const', seed })).boxes;
      areas.push((box[3] * box[4]) / (224 * 224));
      logAspects.push(Math.log(box[3] / box[4]));
    }
    const meanOf = (v: number[]) => v.reduce((s, a) => s + a, 0) / v.length;
    // uniform on [0.02, 1/3]: mean 0.1767, sd 0.0905 (400 draws: the mean within 0.02); log aspect on ±ln(1/0.3)
    expect(Math.abs(meanOf(areas) - (0.02 + 1 / 3) / 2)).toBeLessThan(0.02);
    expect(Math.min(...areas)).toBeGreaterThan(0.015);
    expect(Math.max(...areas)).toBeLessThan(0.345);
    expect(Math.abs(meanOf(logAspects))).toBeLessThan(0.12);
    expect(Math.max(...logAspects.map(Math.abs))).toBeLessThan(Math.log(1 / 0.3) + 0.05);
  });

  test('prob, count and the fills: rand one colour a box, const zeros; options are checked', async () => {
    using images = tensor(x, [b, c, h, w]);
    let erased = 0;
    for (let seed = 0; seed < 100; seed++)
      erased += new Set((await randomErasingImages(images, { seed })).boxes.map((box) => box[0])).size;
    expect(erased / 800).toBeGreaterThan(0.2); // 0.25 by default: 800 images, sd 0.015
    expect(erased / 800).toBeLessThan(0.3);
    const counts = new Set<number>();
    for (let seed = 0; seed < 30; seed++) {
      const { boxes } = await randomErasingImages(images, { prob: 1, count: 3, fill: 'rand', seed });
      const out = (
        await randomErasingImages(images, { prob: 1, count: 3, fill: 'rand', seed })
      ).images.toFloat32Array();
      for (let n = 0; n < b; n++) {
        const own = boxes.filter((box) => box[0] === n);
        counts.add(own.length);
        for (const box of own) {
          // each box's area share: at most a third of the image over the number of boxes, plus rounding
          expect((box[3] - 0.5) * (box[4] - 0.5)).toBeLessThanOrEqual((h * w) / 3 / own.length);
        }
        const last = own.at(-1);
        if (last && last[3] > 0 && last[4] > 0) {
          for (let ch = 0; ch < c; ch++) {
            const colour = out[at(n, ch, last[1], last[2])];
            expect(out[at(n, ch, last[1] + last[3] - 1, last[2] + last[4] - 1)]).toBe(colour);
          }
        }
      }
    }
    expect([...counts].sort()).toEqual([1, 2, 3]);
    const zeros = await randomErasingImages(images, { prob: 1, fill: 'const', seed: 5 });
    const [, top, left] = zeros.boxes[0];
    expect(zeros.images.toFloat32Array()[at(0, 1, top, left)]).toBe(0);
    // prob 0 is off, as timm's --reprob 0: nothing erased, nothing drawn
    const off = await randomErasingImages(images, { prob: 0, seed: 5 });
    expect(off.boxes).toEqual([]);
    expect(Buffer.from(off.images.toFloat32Array().buffer).equals(Buffer.from(x.buffer))).toBe(true);
    await expect(randomErasingImages(images, { prob: -0.25 })).rejects.toThrow('options.prob');
    await expect(randomErasingImages(images, { fill: 'noise' as never })).rejects.toThrow('options.fill');
    using bytes = tensor(new Uint8Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    await expect(randomErasingImages(bytes)).rejects.toThrow('random erasing needs floating-point images');
  });
});

describe('mixup and CutMix', () => {
  const [b, c, h, w, classes] = [6, 3, 8, 10, 5];
  const random = seededRandom(8);
  const x = Float32Array.from({ length: b * c * h * w }, () => random() * 4 - 2);
  const labels = [0, 3, 1, 4, 4, 2];
  const at = (n: number, ch: number, y: number, xx: number) => ((n * c + ch) * h + y) * w + xx;

  test("mixup: each image is λ·x + (1 − λ)·x.flip(0) exactly, and targets timm's smoothed rows mixed by λ", async () => {
    using images = tensor(x, [b, c, h, w]);
    using y = tensor(BigInt64Array.from(labels.map(BigInt)));
    for (const [seed, labelSmoothing] of [
      [1, 0],
      [2, 0.1],
      [3, 0.3],
    ]) {
      const out = await mixupImages(images, y, { numClasses: classes, cutmixAlpha: 0, labelSmoothing, seed });
      expect(out.cutmix).toBe(false);
      expect(out.lambda).toBeGreaterThan(0);
      expect(out.lambda).toBeLessThan(1);
      const lam = Math.fround(out.lambda);
      const rest = Math.fround(1 - out.lambda);
      const expected = x.map((v, i) => {
        const n = Math.floor(i / (c * h * w));
        const flipped = x[i + (b - 1 - 2 * n) * c * h * w];
        return Math.fround(Math.fround(v * lam) + Math.fround(flipped * rest));
      });
      expect(Buffer.compare(Buffer.from(out.images.toFloat32Array().buffer), Buffer.from(expected.buffer))).toBe(0);
      const targets = out.targets.toFloat32Array();
      const reference = softTargets(labels, classes, out.lambda, labelSmoothing);
      targets.forEach((t, i) => expect(t).toBeCloseTo(reference[i], 6));
      for (let n = 0; n < b; n++) {
        expect(targets.subarray(n * classes, (n + 1) * classes).reduce((s, t) => s + t, 0)).toBeCloseTo(1, 6);
      }
      if (labelSmoothing === 0) expect(targets[0 * classes + 0]).toBeCloseTo(out.lambda, 6); // label 0, flip label 2
      if (labelSmoothing === 0.1) expect(targets[0 * classes + 1]).toBeCloseTo(0.02, 7); // neither label: ε/5
    }
  });

  test('CutMix: a box of the reversed batch pasted in, λ = 1 − box area / image area; prob 0 mixes nothing', async () => {
    using images = tensor(x, [b, c, h, w]);
    using y = tensor(BigInt64Array.from(labels.map(BigInt)));
    let boxes = 0;
    for (let seed = 0; seed < 12; seed++) {
      const out = await mixupImages(images, y, { numClasses: classes, mixupAlpha: 0, labelSmoothing: 0, seed });
      expect(out.cutmix).toBe(true);
      const [top, bottom, left, right] = out.box;
      expect(0 <= top && top <= bottom && bottom <= h && 0 <= left && left <= right && right <= w).toBe(true);
      expect(out.lambda).toBe(1 - ((bottom - top) * (right - left)) / (h * w));
      if (bottom > top && right > left) boxes++;
      const got = out.images.toFloat32Array();
      for (let n = 0; n < b; n++)
        for (let ch = 0; ch < c; ch++)
          for (let yy = 0; yy < h; yy++)
            for (let xx = 0; xx < w; xx++) {
              const inside = yy >= top && yy < bottom && xx >= left && xx < right;
              expect(got[at(n, ch, yy, xx)]).toBe(x[at(inside ? b - 1 - n : n, ch, yy, xx)]);
            }
      const reference = softTargets(labels, classes, out.lambda, 0);
      out.targets.toFloat32Array().forEach((t, i) => expect(t).toBeCloseTo(reference[i], 6));
    }
    expect(boxes).toBeGreaterThan(6);
    const none = await mixupImages(images, y, { numClasses: classes, prob: 0, seed: 1 });
    expect(none.lambda).toBe(1);
    expect(Buffer.compare(Buffer.from(none.images.toFloat32Array().buffer), Buffer.from(x.buffer))).toBe(0);
    const smoothed = none.targets.toFloat32Array();
    smoothed.forEach((t, i) => expect(t).toBeCloseTo(softTargets(labels, classes, 1, 0.1)[i], 6));
  });

  test("with both on (DeiT's defaults), half the batches are CutMix and λ follows Beta(α, α); the same seed repeats", async () => {
    using images = tensor(x, [b, c, h, w]);
    using y = tensor(BigInt64Array.from(labels.map(BigInt)));
    const mixLambdas: number[] = [];
    let cutmixes = 0;
    for (let seed = 0; seed < 300; seed++) {
      const out = await mixupImages(images, y, { numClasses: classes, seed });
      if (out.cutmix) cutmixes++;
      else mixLambdas.push(out.lambda);
    }
    expect(cutmixes).toBeGreaterThan(115);
    expect(cutmixes).toBeLessThan(185);
    const mean = mixLambdas.reduce((a, v) => a + v, 0) / mixLambdas.length;
    const variance = mixLambdas.reduce((a, v) => a + (v - mean) ** 2, 0) / mixLambdas.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.06);
    expect(variance).toBeGreaterThan(0.07); // Beta(0.8, 0.8): 1 / (4 · 2.6) = 0.096
    expect(variance).toBeLessThan(0.125);
    const a = await mixupImages(images, y, { numClasses: classes, seed: 77 });
    const again = await mixupImages(images, y, { numClasses: classes, seed: 77 });
    expect(again.lambda).toBe(a.lambda);
    expect(again.box).toEqual(a.box);
    await expect(mixupImages(images, y, { numClasses: classes, mixupAlpha: 0, cutmixAlpha: 0 })).rejects.toThrow(
      'both 0',
    );
  });

  test("a small α puts λ at the ends, as numpy's Beta does; Beta(0.2, 0.2)'s mean and variance", async () => {
    // Bug: α was raised to 1e-3 and both Gamma draws underflowed alike, so λ came out exactly 0.5 in a quarter of
    // the batches (full mixing), where numpy's Beta(1e-3, 1e-3) mixes a fraction of a percent more than 1 %.
    using images = tensor(x, [b, c, h, w]);
    using y = tensor(BigInt64Array.from(labels.map(BigInt)));
    const lambdas = async (mixupAlpha: number, seeds: number) => {
      const drawn: number[] = [];
      for (let seed = 0; seed < seeds; seed++) {
        drawn.push((await mixupImages(images, y, { numClasses: classes, mixupAlpha, cutmixAlpha: 0, seed })).lambda);
      }
      return drawn;
    };
    for (const alpha of [1e-3, 1e-6]) {
      const drawn = await lambdas(alpha, 200);
      // P(0.01 < λ < 0.99) under Beta(α, α) is about α·ln(99) (0.46 % at 1e-3): 200 draws see a few at most
      expect(drawn.filter((l) => l > 0.01 && l < 0.99).length).toBeLessThanOrEqual(6);
      expect(drawn.filter((l) => l < 0.5).length).toBeGreaterThan(70); // each end about half the time
      expect(drawn.filter((l) => l > 0.5).length).toBeGreaterThan(70);
    }
    const drawn = await lambdas(0.2, 400);
    const mean = drawn.reduce((a, v) => a + v, 0) / drawn.length;
    const variance = drawn.reduce((a, v) => a + (v - mean) ** 2, 0) / drawn.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.06); // standard error 0.021
    expect(Math.abs(variance - 1 / (4 * 1.4))).toBeLessThan(0.03); // 1 / (4(2α + 1)) = 0.179; standard error 0.009
  });

  test('the soft-target cross-entropy equals −Σ t·log softmax averaged in float64; hard targets equal their one-hot rows', async () => {
    const rows = 7;
    const r = seededRandom(3);
    const logits = Float32Array.from({ length: rows * classes }, () => r() * 8 - 4);
    const soft = Float32Array.from({ length: rows * classes }, () => r());
    for (let n = 0; n < rows; n++) {
      const row = soft.subarray(n * classes, (n + 1) * classes);
      const total = row.reduce((a, v) => a + v, 0);
      row.forEach((v, k) => (row[k] = v / total));
    }
    const reference = (targets: ArrayLike<number>) => {
      let loss = 0;
      for (let n = 0; n < rows; n++) {
        const z = Array.from(logits.subarray(n * classes, (n + 1) * classes));
        const max = Math.max(...z);
        const logSum = max + Math.log(z.reduce((a, v) => a + Math.exp(v - max), 0));
        z.forEach((v, k) => (loss -= targets[n * classes + k] * (v - logSum)));
      }
      return loss / rows;
    };
    using l = tensor(logits, [rows, classes]);
    using t = tensor(soft, [rows, classes]);
    using loss = await crossEntropy(l, t);
    expect(loss.shape).toEqual([]);
    expect(Math.abs(loss.toFloat64Array()[0] - reference(soft))).toBeLessThan(1e-5 * reference(soft));
    const hard = [0, 4, 2, 2, 1, 3, 0];
    const oneHot = Float32Array.from({ length: rows * classes }, (_, i) =>
      hard[Math.floor(i / classes)] === i % classes ? 1 : 0,
    );
    using h = tensor(BigInt64Array.from(hard.map(BigInt)));
    using hardLoss = await crossEntropy(l, h);
    expect(Math.abs(hardLoss.toFloat64Array()[0] - reference(oneHot))).toBeLessThan(1e-5 * reference(oneHot));
    using wrong = tensor(new Float32Array(rows * 3), [rows, 3]);
    await expect(crossEntropy(l, wrong)).rejects.toThrow(
      `soft targets must be a floating-point tensor [${rows}, ${classes}]`,
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Fitting with the augmentation

const spec = { ...tinyVit }; // imgSize 16
const trainerOptions = { optimizer: { lr: 1e-2 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 3 };
const normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const strong = { resizedCrop: true, flip: true, randAugment: 'rand-m9-mstd0.5-inc1', mixup: true } as const;

const { base, init, freshModel, adapterBytes } = sharedTinyModel(temp.dir, spec);

describe('fit', () => {
  const task = uint8ColourData(64, 9, 10);

  test('augmented fits repeat with the same seed and differ from plain ones; options are checked before training', async () => {
    const fit = { epochs: 2, batchSize: 16, schedule: false as const, progress: false as const };
    const run = async (augment?: object, seed = 3) => {
      using model = await freshModel();
      const dataset = new TensorDataset(task.images, task.labels, { normalization, augment });
      const history = await new Trainer(model, { ...trainerOptions, seed }).fit(dataset, fit);
      return history.epochs.map((e) => [e.loss, e.acc]);
    };
    const augmented = await run(strong);
    expect(await run(strong)).toEqual(augmented);
    expect(await run(strong, 4)).not.toEqual(augmented);
    expect(await run()).not.toEqual(augmented);
    // Each piece changes the batches on its own.
    const plain = await run({ flip: true });
    for (const piece of [{ resizedCrop: true }, { randAugment: 'rand-m9-mstd0.5-inc1' }, { mixup: true }]) {
      expect(await run({ flip: true, ...piece })).not.toEqual(plain);
    }
    augmented.flat().forEach((v) => expect(Number.isFinite(v)).toBe(true));

    using model = await freshModel();
    const trainer = new Trainer(model, trainerOptions);
    const floatSet = new TensorDataset(
      tensor(new Float32Array(4 * 3 * 16 * 16), [4, 3, 16, 16]),
      tensor(BigInt64Array.from([0n, 1n, 2n, 3n])),
      {
        augment: { mixup: true }, // mixup alone applies to float images
      },
    );
    expect(floatSet.augment).toEqual({ mixup: true });
    expect(() => new TensorDataset(floatSet.images, floatSet.labels, { augment: { randAugment: 'rand-m9' } })).toThrow(
      'augment.randAugment needs uint8 images [N, H, W, C]',
    );
    expect(
      () => new TensorDataset(task.images, task.labels, { normalization, augment: { randAugment: 'rand-z' } }),
    ).toThrow("RandAugment section 'z' is not one of");
    expect(
      () => new TensorDataset(task.images, task.labels, { normalization, augment: { crop: 16, resizedCrop: true } }),
    ).toThrow('augment.crop and augment.resizedCrop are alternatives');
    const dataset = new TensorDataset(task.images, task.labels, { normalization, augment: { crop: 16, flip: true } });
    await expect(
      trainer.fit(dataset, { ...fit, augment: { mixup: { mixupAlpha: 0, cutmixAlpha: 0 } } }),
    ).rejects.toThrow('options.augment.mixup');
    // fit's augment goes over the dataset's: a resized crop replaces its crop.
    const over = await trainer.fit(dataset, { ...fit, epochs: 1, augment: { resizedCrop: { scale: [0.5, 1] } } });
    expect(over.stopReason).toBe('completed');
    // ... and a crop its resized crop (it was refused: "alternatives", though the fit gave one); false turns a
    // dataset's piece off (it was refused: "Invalid input").
    const resized = new TensorDataset(task.images, task.labels, { normalization, augment: { resizedCrop: true } });
    expect((await trainer.fit(resized, { ...fit, epochs: 1, augment: { crop: 16 } })).stopReason).toBe('completed');
    const losses = async (set: TensorDataset, augment?: object) => {
      using fresh = await freshModel();
      const history = await new Trainer(fresh, trainerOptions).fit(set, { ...fit, ...(augment && { augment }) });
      return history.epochs.map((e) => e.loss);
    };
    const mixing = new TensorDataset(task.images, task.labels, { normalization, augment: { flip: true, mixup: true } });
    const flipping = new TensorDataset(task.images, task.labels, { normalization, augment: { flip: true } });
    const plainLosses = await losses(flipping);
    expect(await losses(mixing, { mixup: false })).toEqual(plainLosses);
    expect(await losses(mixing)).not.toEqual(plainLosses);
    await expect(trainer.fit(dataset, { ...fit, augment: { mixup: 'yes' as never } })).rejects.toThrow(
      'options.augment.mixup: expected boolean or an object, got "yes"',
    );
  });

  test("random erasing in a fit: it changes the batches, fit turns a dataset's off with false, float sets take it", async () => {
    const fit = { epochs: 1, batchSize: 16, schedule: false as const, progress: false as const };
    const losses = async (set: TensorDataset, augment?: object) => {
      using model = await freshModel();
      const history = await new Trainer(model, trainerOptions).fit(set, { ...fit, ...(augment && { augment }) });
      return history.epochs.map((e) => e.loss);
    };
    const flipping = new TensorDataset(task.images, task.labels, { normalization, augment: { flip: true } });
    const erasing = new TensorDataset(task.images, task.labels, {
      normalization,
      augment: { flip: true, randomErasing: { prob: 1 } },
    });
    const plain = await losses(flipping);
    expect(await losses(erasing)).not.toEqual(plain);
    expect(await losses(erasing, { randomErasing: false })).toEqual(plain);
    expect(await losses(flipping, { randomErasing: true })).not.toEqual(plain);
    const random = seededRandom(6);
    const floatImages = tensor(
      Float32Array.from({ length: 16 * 3 * 16 * 16 }, () => random() * 2 - 1),
      [16, 3, 16, 16],
    );
    const floatLabels = tensor(BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i % 4)));
    const floats = new TensorDataset(floatImages, floatLabels, { augment: { randomErasing: { prob: 1 } } });
    expect(floats.augment).toEqual({ randomErasing: { prob: 1 } });
    const floatPlain = await losses(new TensorDataset(floatImages, floatLabels));
    expect(await losses(floats)).not.toEqual(floatPlain);
    // prob 0 turns a dataset's off, as false does
    expect(await losses(floats, { randomErasing: { prob: 0 } })).toEqual(floatPlain);
    await expect(losses(flipping, { randomErasing: { prob: 2 } })).rejects.toThrow('options.augment.randomErasing');
  });

  test("a fit's interpolation resamples its resized crops (and RandAugment's geometry); other names are refused", async () => {
    const fit = { epochs: 1, batchSize: 16, schedule: false as const, progress: false as const };
    const losses = async (augment: object) => {
      using model = await freshModel();
      const set = new TensorDataset(task.images, task.labels, { normalization, augment: { resizedCrop: true } });
      return (await new Trainer(model, trainerOptions).fit(set, { ...fit, augment })).epochs.map((e) => e.loss);
    };
    const bilinear = await losses({});
    expect(await losses({ interpolation: 'bilinear' })).toEqual(bilinear);
    expect(await losses({ interpolation: 'bicubic' })).not.toEqual(bilinear);
    await expect(losses({ interpolation: 'nearest' })).rejects.toThrow('options.augment.interpolation');
    // RandAugment alone (one geometric or other operation an image, always applied): its affine transforms too
    const rand = { resizedCrop: false, randAugment: 'rand-n1-m9-mstd0-p1.0' };
    const randBilinear = await losses(rand);
    expect(await losses({ ...rand, interpolation: 'bilinear' })).toEqual(randBilinear);
    expect(await losses({ ...rand, interpolation: 'bicubic' })).not.toEqual(randBilinear);
  });

  test("RandAugment on grey images fills with the normalisation's colour, as timm's RGB conversion does: they train as their RGB copy", async () => {
    // Bug: a grey batch was filled with the mean's first channel on all three (124, 124, 124 for ImageNet's mean),
    // where timm, which converts to RGB first, fills (124, 116, 104).
    const [n, side] = [32, 16];
    const { grey, rgb } = greyImagesAndRgbCopies(n, side, 6);
    const labels = tensor(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 4)));
    const fit = { epochs: 1, batchSize: 8, schedule: false as const, progress: false as const };
    // one operation an image, always applied: rotations, shears and translations uncover the fill
    const augment = { randAugment: 'rand-n1-m9-mstd0-p1.0' };
    const losses = async (images: Tensor, mean: number[]) => {
      using model = await freshModel();
      const set = new TensorDataset(images, labels, { normalization: { mean, std: normalization.std }, augment });
      return (await new Trainer(model, trainerOptions).fit(set, fit)).epochs.map((e) => e.loss);
    };
    expect(await losses(grey, normalization.mean)).toEqual(await losses(rgb, normalization.mean));
    // a grey fill (0.5: 128 on all three) keeps grey batches grey, and they augment as their RGB copy too
    expect(await losses(grey, [0.5, 0.5, 0.5])).toEqual(await losses(rgb, [0.5, 0.5, 0.5]));
  });

  test('a flip alone keeps the whole image: mirror-symmetric images train exactly as without it', async () => {
    // Bug: flips alone on non-square images cropped a random square of the shorter side first.
    const [n, ih, iw] = [32, 12, 20];
    const random = seededRandom(4);
    const data = new Uint8Array(n * ih * iw * 3);
    for (let i = 0; i < n; i++)
      for (let y = 0; y < ih; y++)
        for (let xx = 0; xx < iw / 2; xx++)
          for (let ch = 0; ch < 3; ch++) {
            const v = Math.floor(random() * 256);
            data[((i * ih + y) * iw + xx) * 3 + ch] = v;
            data[((i * ih + y) * iw + (iw - 1 - xx)) * 3 + ch] = v;
          }
    const images = tensor(data, [n, ih, iw, 3]);
    const labels = tensor(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 4)));
    const fit = { epochs: 1, batchSize: 8, schedule: false as const, progress: false as const };
    const losses = async (augment?: object) => {
      using model = await freshModel();
      const set = new TensorDataset(images, labels, { normalization, ...(augment && { augment }) });
      return (await new Trainer(model, trainerOptions).fit(set, fit)).epochs.map((e) => e.loss);
    };
    expect(await losses({ flip: true })).toEqual(await losses());
    // ... and flips do happen: with every other pixel's red inverted (no longer mirror images) flips change the losses
    for (let i = 0; i < data.length; i += 6) data[i] = 255 - data[i];
    const unlike = tensor(data, [n, ih, iw, 3]);
    const unlikeLosses = async (augment?: object) => {
      using model = await freshModel();
      const set = new TensorDataset(unlike, labels, { normalization, ...(augment && { augment }) });
      return (await new Trainer(model, trainerOptions).fit(set, fit)).epochs.map((e) => e.loss);
    };
    expect(await unlikeLosses({ flip: true })).not.toEqual(await unlikeLosses());
  });

  test('with soft targets a step counts argmax(logits) against the dominant label and its loss is the soft cross-entropy', async () => {
    using model = await freshModel();
    const trainer = new Trainer(model, { optimizer: { lr: 1e-2 }, pace: { sigma: 0, lambda: 0 }, seed: 1 });
    const r = seededRandom(5);
    using images = tensor(
      Float32Array.from({ length: 8 * 3 * 16 * 16 }, () => r() * 2 - 1),
      [8, 3, 16, 16],
    );
    using labels = tensor(BigInt64Array.from([0n, 1n, 2n, 3n, 0n, 1n, 2n, 3n])); // each unlike its mirror
    const mixed = await mixupImages(images, labels, { numClasses: 4, seed: 2 });
    using logits = await model.forward(mixed.images); // the training forward has no randomness here
    const z = logits.toFloat32Array();
    const t = mixed.targets.toFloat32Array();
    const argmax = (a: Float32Array, n: number) => {
      const row = Array.from(a.subarray(n * 4, n * 4 + 4));
      return row.indexOf(Math.max(...row));
    };
    let hits = 0;
    for (let n = 0; n < 8; n++) if (argmax(z, n) === argmax(t, n)) hits++;
    using expectedLoss = await crossEntropy(logits, mixed.targets);
    const step = await trainer.trainStep(mixed.images, mixed.targets);
    expect(step.correct).toBe(hits);
    expect(step.counted).toBe(8);
    expect(step.clsLoss).toBeCloseTo(expectedLoss.toFloat64Array()[0], 5);
  });

  test('a fit with resized crops, RandAugment and mixup, killed with SIGKILL and resumed, ends exactly as an uninterrupted run', async () => {
    const fit = {
      epochs: 5,
      batchSize: 16,
      evalEvery: 5,
      schedule: { warmupEpochs: 1 },
      progress: false as const,
      augment: { randAugment: 'rand-m9-mstd0.5-inc1', mixup: true as const },
    };
    const datasetOptions = { normalization, augment: { resizedCrop: true as const, flip: true } };
    using whole = await freshModel();
    await new Trainer(whole, trainerOptions).fit(new TensorDataset(task.images, task.labels, datasetOptions), {
      ...fit,
      runDir: path.join(temp.dir, 'whole'),
    });
    const expected = await adapterBytes(whole, 'whole');

    const data = path.join(temp.dir, 'data.safetensors');
    await saveTensors(data, { images: task.images, labels: task.labels });
    const runDir = path.join(temp.dir, 'killed');
    const args = {
      spec,
      base,
      init,
      data,
      dataset: datasetOptions,
      runDir,
      adapters: { rank: 4 },
      trainer: trainerOptions,
      fit,
    };
    // Killed inside epoch 2 (after its second step): the run resumes from epoch 1's checkpoint.
    const killed = await runFitChildUntil(args, { at: 'step', count: 2 * 4 + 2 });
    expect(killed).toMatchObject({ stderr: '', finished: false, signal: 'SIGKILL' });

    using resumedModel = await freshModel();
    const history = await new Trainer(resumedModel, trainerOptions).fit(
      new TensorDataset(task.images, task.labels, datasetOptions),
      { ...fit, resume: runDir },
    );
    expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3, 4]);
    expect((await adapterBytes(resumedModel, 'resumed')).equals(expected)).toBe(true);
    // The run folder records the augmentation it trained with.
    expect(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')).fit.augment).toEqual(fit.augment);
  });

  test('pace fit configs take fit.augment and the list transform resized-crop-flip', () => {
    const config = parseRunConfig(
      {
        model: { name: spec, numClasses: 4 },
        data: { train: { list: 'train.list', root: 'images', numClasses: 4, transform: 'resized-crop-flip' } },
        fit: {
          epochs: 1,
          batchSize: 8,
          augment: { randAugment: 'rand-m9-mstd0.5-inc1', mixup: { labelSmoothing: 0.1 } },
        },
      },
      temp.dir,
      'config',
    );
    expect(config.fit.augment).toEqual({ randAugment: 'rand-m9-mstd0.5-inc1', mixup: { labelSmoothing: 0.1 } });
    expect(DatasetSourceSchema.safeParse({ list: 'a', root: 'b', numClasses: 2, transform: 'rrc' }).success).toBe(
      false,
    );
  });
});
