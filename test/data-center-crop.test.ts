import path from 'node:path';

import sharp from 'sharp';

import { loadImages } from '../lib';
import { makeTempDir } from './support/paths';
import { pillowResize } from './support/pillow-resample';

// center-crop is torchvision's Resize(floor(size / 0.875)) and CenterCrop(size) of a Pillow image. These tests
// hold it to that, written out here: the image decoded whole and oriented, resized at torchvision's size (the
// longer side truncated) by Pillow's bilinear arithmetic (test/support/pillow-resample.ts), and its middle taken
// at torchvision's offsets (Python's round of (side − size) / 2, halves to even).

const temp = makeTempDir('center-crop');
afterAll(() => temp.cleanup());
const normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

async function pillowCrop(file: string, size: number, shiftLeft = 0): Promise<Buffer> {
  const shorter = Math.floor(size / 0.875);
  const { data, info } = await sharp(file, { failOn: 'error' })
    .rotate()
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const [width, height] = [info.width, info.height];
  const target =
    width <= height
      ? { width: shorter, height: Math.trunc((shorter * height) / width) }
      : { width: Math.trunc((shorter * width) / height), height: shorter };
  const resized = pillowResize(data, width, height, 3, target.width, target.height, 'bilinear');
  const [left, top] = [pythonRound((target.width - size) / 2) + shiftLeft, pythonRound((target.height - size) / 2)];
  const crop = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size * 3; x++) crop[y * size * 3 + x] = resized[((top + y) * target.width + left) * 3 + x];
  }
  return crop;
}

/** Python 3's round(): a half goes to the even neighbour (0.5 → 0, 1.5 → 2, 2.5 → 2). */
function pythonRound(value: number): number {
  const rounded = Math.round(value);
  return rounded - value === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

/** Each file's pixels as loadImages center-crops them. */
async function centerCrops(files: string[], size: number): Promise<Buffer[]> {
  const entries = files.map((file, i) => ({ path: file, label: 0, line: i + 1 }));
  const { dataset } = await loadImages(entries, { size, resize: 'center-crop', normalization, progress: false });
  const pixels = Buffer.from(dataset.images.toUint8Array());
  return files.map((_, i) => pixels.subarray(i * size * size * 3, (i + 1) * size * size * 3));
}

/** Every pixel different from its neighbours, so an offset or a transposition shows. */
function pattern(width: number, height: number): sharp.Sharp {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++)
      data.set([(x * 7 + y * 3) % 256, (y * 11 + x) % 256, (x * y + 5) % 256], (y * width + x) * 3);
  }
  return sharp(data, { raw: { width, height, channels: 3 } });
}

type Encode = (image: sharp.Sharp) => sharp.Sharp;
const png: Encode = (image) => image.png();
const jpeg: Encode = (image) => image.jpeg({ quality: 90 });
const webp: Encode = (image) => image.webp({ quality: 90 });

async function write(name: string, width: number, height: number, encode: Encode): Promise<string> {
  const file = path.join(temp.dir, name);
  await encode(pattern(width, height)).toFile(file);
  return file;
}

/** The files' crops equal Pillow's, byte for byte; named by file so a difference shows which. */
async function expectPillowPixels(files: string[], size: number): Promise<void> {
  const crops = await centerCrops(files, size);
  for (const [i, file] of files.entries()) {
    const reference = await pillowCrop(file, size);
    expect([path.basename(file), crops[i].equals(reference)]).toEqual([path.basename(file), true]);
  }
}

test.each([
  [
    28,
    [
      [33, 700],
      [700, 33],
      [34, 35],
      [35, 34],
      [47, 65],
      [65, 47],
      [99, 301],
      [301, 99],
      [255, 257],
      [257, 255],
      [433, 699],
      [699, 433],
      [128, 128],
      [513, 64],
      [64, 513],
      [20, 50], // the shorter side below 32: upscaled
      [50, 20],
      [5, 9],
      [1, 300],
      [300, 1],
    ],
  ],
  [
    224,
    [
      [256, 700],
      [701, 300],
      [300, 300],
      [257, 259],
      [20, 50],
      [38, 33], // enlarged 7.75 times
    ],
  ],
])('PNGs at size %i: the same pixels as Pillow resizing whole and cropping after', async (size, sizes) => {
  const files = await Promise.all(sizes.map(([w, h]) => write(`p${size}-${w}x${h}.png`, w, h, png)));
  await expectPillowPixels(files, size);
});

test('JPEGs large enough for sharp to shrink on load (by 8, 4, 2), decoded whole as Pillow does: the same pixels', async () => {
  const sizes = [
    [640, 480],
    [643, 481],
    [481, 643],
    [128, 160],
    [160, 128],
    [75, 99],
    [300, 1000],
  ];
  const files = await Promise.all(sizes.map(([w, h]) => write(`j-${w}x${h}.jpg`, w, h, jpeg)));
  await expectPillowPixels(files, 28);
  await expectPillowPixels([await write('j-1000x700.jpg', 1000, 700, jpeg)], 224);
});

test('JPEGs with each EXIF orientation (5-8 turn the image a quarter): the same pixels', async () => {
  const files = await Promise.all(
    [2, 3, 4, 5, 6, 7, 8].map((orientation) =>
      write(`exif${orientation}.jpg`, 300, 130, (image) => jpeg(image).withMetadata({ orientation })),
    ),
  );
  await expectPillowPixels(files, 28);
});

test('WebP, which sharp would shrink on load by a fractional scale: the same pixels', async () => {
  const files = [await write('w-500x261.webp', 500, 261, webp), await write('w-261x500.webp', 261, 500, webp)];
  await expectPillowPixels(files, 28);
});

test('1-pixel-thin images (1×12000, 12000×1) crop without resizing them whole', async () => {
  // Resized whole they would be 256 × 3,072,000 pixels, past sharp's limit: the old crop failed on them.
  const tall = await write('thin-1x12000.png', 1, 12000, png);
  const wide = await write('thin-12000x1.png', 12000, 1, png);
  const [fromTall, fromWide] = await centerCrops([tall, wide], 224);
  const at = (pixels: Buffer, x: number, y: number) =>
    Array.from(pixels.subarray((y * 224 + x) * 3, (y * 224 + x) * 3 + 3));
  for (let i = 0; i < 224; i++) {
    // The one column (row) stretched across: every row of the tall one is uniform, every column of the wide one.
    expect([i, at(fromTall, 223, i)]).toEqual([i, at(fromTall, 0, i)]);
    expect([i, at(fromWide, i, 223)]).toEqual([i, at(fromWide, i, 0)]);
  }
  expect(at(fromTall, 0, 0)).not.toEqual(at(fromTall, 0, 100));
});

test('an image more than 16 times as wide as high: the crop window alone is computed, the same pixels', async () => {
  // Bugs: the window's samples computed from its own left edge rather than the whole row's, or a window one pixel off.
  const file = await write('wide-2000x100.png', 2000, 100, png);
  const [crop] = await centerCrops([file], 28);
  const maxDifference = (other: Buffer) => crop.reduce((max, v, i) => Math.max(max, Math.abs(v - other[i])), 0);
  expect(maxDifference(await pillowCrop(file, 28))).toBe(0);
  expect(maxDifference(await pillowCrop(file, 28, 1))).toBeGreaterThan(2);
  expect(maxDifference(await pillowCrop(file, 28, -1))).toBeGreaterThan(2);
});

test("squash-crop is NOAH's Resize((s, s), BICUBIC) then CenterCrop(size), s = floor(size / 0.875): Pillow's pixels", async () => {
  const sizes = [
    [256, 700],
    [701, 300],
    [20, 50], // enlarged
    [300, 1],
    [257, 259],
  ];
  const files = await Promise.all(sizes.map(([w, h]) => write(`squash-${w}x${h}.png`, w, h, png)));
  // 21: the crop's offset (24 − 21) / 2 = 1.5 rounds half to even, to 2 (a floor would take 1)
  for (const size of [21, 28, 224]) {
    const entries = files.map((file, i) => ({ path: file, label: 0, line: i + 1 }));
    const { dataset } = await loadImages(entries, { size, resize: 'squash-crop', normalization, progress: false });
    const pixels = Buffer.from(dataset.images.toUint8Array());
    const whole = Math.floor(size / 0.875);
    const offset = pythonRound((whole - size) / 2);
    for (const [i, file] of files.entries()) {
      const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const resized = Buffer.from(pillowResize(data, info.width, info.height, 3, whole, whole, 'bicubic'));
      const crop = Buffer.alloc(size * size * 3);
      for (let y = 0; y < size; y++) {
        const from = ((offset + y) * whole + offset) * 3;
        resized.copy(crop, y * size * 3, from, from + size * 3);
      }
      const mine = pixels.subarray(i * size * size * 3, (i + 1) * size * size * 3);
      expect([size, path.basename(file), mine.equals(crop)]).toEqual([size, path.basename(file), true]);
    }
  }
});
