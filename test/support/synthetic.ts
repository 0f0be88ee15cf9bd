import { tensor, TensorDataset, type Tensor } from '../../lib';

/** A small seeded PRNG (mulberry32), so synthetic data is the same in every process. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A learnable task: `count` 16×16 RGB images in 4 classes, on top of noise: classes 0-2 brighten one colour
 * channel in a random 8×8 square, class 3 darkens all of them there. Returns the raw arrays.
 */
export function colourData(count: number, seed: number): { images: Float32Array; labels: BigInt64Array } {
  const random = seededRandom(seed);
  const size = 16;
  const images = new Float32Array(count * 3 * size * size);
  const labels = new BigInt64Array(count);
  for (let n = 0; n < count; n++) {
    const label = Math.floor(random() * 4);
    labels[n] = BigInt(label);
    const rowStart = Math.floor(random() * 9);
    const colStart = Math.floor(random() * 9);
    for (let c = 0; c < 3; c++) {
      const signal = label === 3 ? -1 : label === c ? 1 : 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const inside = y >= rowStart && y < rowStart + 8 && x >= colStart && x < colStart + 8;
          images[((n * 3 + c) * size + y) * size + x] = (inside ? signal : 0) + (random() - 0.5) * 0.8;
        }
      }
    }
  }
  return { images, labels };
}

export function colourDataset(count: number, seed: number): TensorDataset {
  const { images, labels } = colourData(count, seed);
  return new TensorDataset(tensor(images, [count, 3, 16, 16]), tensor(labels));
}

export const tinyVit = {
  family: 'vit',
  imgSize: 16,
  patchSize: 8,
  embedDim: 32,
  depth: 2,
  numHeads: 2,
  numClasses: 4,
} as const;

/**
 * A learnable uint8 task stored at 20×20 (HWC), for crops of 16 as the reference stores 256 for crops of 224: noise
 * with a `square`×`square` patch at a random place, bright in the label's colour channel (dark for label 3).
 */
export function uint8ColourData(count: number, seed: number, square = 8): { images: Tensor; labels: Tensor } {
  const random = seededRandom(seed);
  const size = 20;
  const pixels = new Uint8Array(count * size * size * 3);
  const labels = new BigInt64Array(count);
  for (let n = 0; n < count; n++) {
    const label = Math.floor(random() * 4);
    labels[n] = BigInt(label);
    const [top, left] = [Math.floor(random() * (size - square + 1)), Math.floor(random() * (size - square + 1))];
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) {
          const inside = y >= top && y < top + square && x >= left && x < left + square;
          const signal = inside ? (label === 3 ? -90 : label === c ? 90 : 0) : 0;
          pixels[((n * size + y) * size + x) * 3 + c] = Math.max(
            0,
            Math.min(255, 128 + signal + (random() - 0.5) * 80),
          );
        }
  }
  return { images: tensor(pixels, [count, size, size, 3]), labels: tensor(labels) };
}
