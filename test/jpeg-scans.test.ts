// A JPEG's scan count, read before decoding: each scan costs the decoder a pass over the whole image, so a crafted
// file of thousands of tiny scans is refused (the server answers 400; a training image is a named file error).
import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { decodeImage } from '../lib/data/image-decode';
import { jpegScanCount, MAX_JPEG_SCANS } from '../lib/data/jpeg-scans';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('jpeg-scans');
afterAll(() => temp.cleanup());

const SOS = Buffer.from([0xff, 0xda]);
const EOI = Buffer.from([0xff, 0xd9]);

async function writeFile(name: string, bytes: Buffer): Promise<string> {
  const file = path.join(temp.dir, name);
  await fs.promises.writeFile(file, bytes);
  return file;
}

/** A 64×48 photo-like JPEG (a gradient), baseline or progressive. */
function photo(progressive: boolean): Promise<Buffer> {
  const pixels = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7) % 251;
  return sharp(pixels, { raw: { width: 64, height: 48, channels: 3 } })
    .jpeg({ progressive, quality: 90 })
    .toBuffer();
}

/** `jpeg` with its last scan (SOS header and data, up to EOI) repeated `times` more before EOI. */
function withRepeatedLastScan(jpeg: Buffer, times: number): Buffer {
  const last = jpeg.lastIndexOf(SOS);
  const end = jpeg.lastIndexOf(EOI);
  const scan = jpeg.subarray(last, end);
  return Buffer.concat([jpeg.subarray(0, end), ...Array<Buffer>(times).fill(scan), EOI]);
}

/** `jpeg` with an APP1 segment after SOI whose payload is full of SOS-like bytes (as an EXIF thumbnail holds). */
function withThumbnailLikeSegment(jpeg: Buffer): Buffer {
  const payload = Buffer.concat(
    Array<Buffer>(1000).fill(Buffer.from([0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00])),
  );
  const header = Buffer.from([0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([jpeg.subarray(0, 2), header, payload, jpeg.subarray(2)]);
}

test("a baseline JPEG has one scan, libjpeg's progressive script ten; segments' contents are not counted", async () => {
  const baseline = await photo(false);
  const progressive = await photo(true);
  expect(jpegScanCount(baseline)).toBe(1);
  expect(jpegScanCount(progressive)).toBe(10); // libjpeg's jpeg_simple_progression for three components
  expect(jpegScanCount(withThumbnailLikeSegment(progressive))).toBe(10);
  expect(jpegScanCount(withRepeatedLastScan(progressive, 5))).toBe(15);
  // Counting stops past the limit (the walk runs on the event loop).
  expect(jpegScanCount(withRepeatedLastScan(progressive, 5000))).toBe(MAX_JPEG_SCANS + 1);
  // Damaged: counted as far as it reads.
  expect(jpegScanCount(progressive.subarray(0, progressive.indexOf(SOS) + 4))).toBe(1);
  expect(jpegScanCount(Buffer.from([0xff, 0xd8, 0xff]))).toBe(0);
});

test('a training image of more scans than a photo has is refused by name; one at the limit reaches the decoder', async () => {
  const progressive = await photo(true);
  const atLimit = path.join(temp.dir, 'at-limit.jpg');
  fs.writeFileSync(atLimit, withRepeatedLastScan(progressive, MAX_JPEG_SCANS - 10));
  expect(jpegScanCount(fs.readFileSync(atLimit))).toBe(MAX_JPEG_SCANS);
  // (libjpeg refuses the repeated refinement scan itself: the file got past the count)
  await expect(decodeImage(atLimit, 16, 'stretch')).rejects.toThrow('Inconsistent progression sequence');
  expect((await decodeImage(await writeFile('photo.jpg', progressive), 16, 'stretch')).pixels).toHaveLength(768);
  const crafted = path.join(temp.dir, 'crafted.jpg');
  fs.writeFileSync(crafted, withRepeatedLastScan(progressive, MAX_JPEG_SCANS - 9));
  await expect(decodeImage(crafted, 16, 'stretch')).rejects.toThrow(
    `the JPEG holds more than ${MAX_JPEG_SCANS} scans (a photo has a few dozen at most); each costs a pass over ` +
      'the whole image, so it is refused before decoding',
  );
});
