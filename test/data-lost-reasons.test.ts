import fs from 'node:fs';
import path from 'node:path';

import realSharp from 'sharp';

import { loadImages } from '../lib';
import { makeTempDir } from './support/paths';

// libvips shares one error buffer between threads, so under parallel decoding a failing decode can lose its message
// (sharp says "Unknown error"). Here sharp is wrapped to lose it on purpose, the first time a `flaky` file is
// decoded, so what loadImages does about it is tested deterministically. The wrapper also counts decodes in flight.

const decodes = { inFlight: 0, atRetry: [] as number[], seen: new Set<string>() };

jest.mock('sharp', () => {
  const actual = jest.requireActual('sharp');
  const wrapped = (input: unknown, options: unknown) => {
    const instance = actual(input, options);
    if (typeof input !== 'string') return instance;
    const toBuffer = instance.toBuffer.bind(instance);
    instance.toBuffer = async (...args: unknown[]) => {
      const first = !decodes.seen.has(input);
      decodes.seen.add(input);
      if (!first && input.includes('flaky')) decodes.atRetry.push(decodes.inFlight);
      decodes.inFlight++;
      try {
        await new Promise((resolve) => setTimeout(resolve, 2));
        if (first && input.includes('flaky')) throw new Error('Unknown error');
        return await toBuffer(...args);
      } finally {
        decodes.inFlight--;
      }
    };
    return instance;
  };
  return Object.assign(wrapped, actual);
});

const temp = makeTempDir('lost-reasons');
afterAll(() => temp.cleanup());
const normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

beforeAll(async () => {
  const png = await realSharp({ create: { width: 16, height: 12, channels: 3, background: 'red' } })
    .png({ compressionLevel: 0 })
    .toBuffer();
  fs.writeFileSync(path.join(temp.dir, 'good.png'), png);
  fs.writeFileSync(path.join(temp.dir, 'flaky-truncated.png'), png.subarray(0, png.length >> 1));
  fs.writeFileSync(path.join(temp.dir, 'flaky-good.png'), png);
});

beforeEach(() => {
  decodes.seen.clear();
  decodes.atRetry = [];
});

const entry = (name: string, line: number) => ({ path: path.join(temp.dir, name), label: 0, line });

test('a skipped image whose reason was lost is decoded again alone: its real reason is reported', async () => {
  const entries = Array.from({ length: 12 }, (_, i) => entry(i === 4 ? 'flaky-truncated.png' : 'good.png', i + 1));
  const { dataset, skipped } = await loadImages(entries, {
    size: 4,
    normalization,
    onBadImage: 'skip',
    concurrency: 4,
  });
  expect(skipped).toEqual([
    { path: path.join(temp.dir, 'flaky-truncated.png'), line: 5, reason: 'pngload: end of stream' },
  ]);
  expect(dataset.length).toBe(11);
  expect(decodes.atRetry).toEqual([0]);
});

test('the image that stops a load is decoded again once the other decodes have stopped', async () => {
  const entries = Array.from({ length: 12 }, (_, i) => entry(i === 4 ? 'flaky-truncated.png' : 'good.png', i + 1));
  await expect(loadImages(entries, { size: 4, normalization, concurrency: 4 })).rejects.toThrow(
    `image '${path.join(temp.dir, 'flaky-truncated.png')}' (list line 5): pngload: end of stream`,
  );
  expect(decodes.atRetry).toEqual([0]);
});

test('an image whose failure was not its own decodes when tried alone, and the load goes on', async () => {
  const entries = Array.from({ length: 12 }, (_, i) => entry(i === 4 ? 'flaky-good.png' : 'good.png', i + 1));
  const { dataset, skipped } = await loadImages(entries, { size: 4, normalization, concurrency: 4 });
  expect([dataset.length, skipped]).toEqual([12, []]);
});
