// Uploads whose PNG text or colour-profile chunks inflate far beyond their size: the server decodes without them.
import path from 'node:path';
import zlib from 'node:zlib';

import sharp from 'sharp';

import { createInferenceServer, createModel, type Model } from '../lib';
import { HttpError } from '../lib/serve/http-error';
import { MAX_PNG_CHUNKS, withoutPngText } from '../lib/serve/png-text';
import { repoRoot } from './support/paths';
import { listen, postImage } from './support/serve';

const checkpoint = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const spec = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 } as const;

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(typed));
  return Buffer.concat([length, typed, crc]);
}

/** `png` with `chunks` inserted after its IHDR (signature 8 bytes, IHDR 25). */
const withChunks = (png: Buffer, chunks: Buffer[]) => Buffer.concat([png.subarray(0, 33), ...chunks, png.subarray(33)]);

function chunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let at = 8; at + 12 <= png.length; at += 12 + png.readUInt32BE(at)) {
    types.push(png.toString('latin1', at + 4, at + 8));
  }
  return types;
}

/** A zTXt chunk whose text inflates to `bytes` bytes (a keyword, a NUL, method 0, then the deflated text). */
const textBomb = (bytes: number) =>
  chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), zlib.deflateSync(Buffer.alloc(bytes, 0x41))]));

let plain: Buffer;
beforeAll(async () => {
  const pixels = Buffer.alloc(28 * 28 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 251;
  plain = await sharp(pixels, { raw: { width: 28, height: 28, channels: 3 } })
    .png()
    .toBuffer();
});

test('text and colour-profile chunks are dropped, every other chunk kept byte for byte, the pixels unchanged', async () => {
  const profile = chunk('iCCP', Buffer.concat([Buffer.from('p\0\0', 'latin1'), zlib.deflateSync(Buffer.alloc(4096))]));
  const plainText = chunk('tEXt', Buffer.from('Title\0hello', 'latin1'));
  const international = chunk('iTXt', Buffer.from('Note\0\0\0\0\0words', 'latin1'));
  const physical = chunk('pHYs', Buffer.from('000000000000000001', 'hex').subarray(0, 9));
  const upload = withChunks(plain, [profile, plainText, physical, textBomb(1 << 20), international]);
  expect((await sharp(upload).metadata()).comments).toHaveLength(3);

  const filtered = withoutPngText(upload);
  expect(chunkTypes(filtered)).toEqual(
    chunkTypes(upload).filter((type) => !['iCCP', 'tEXt', 'zTXt', 'iTXt'].includes(type)),
  );
  expect(filtered).toEqual(withChunks(plain, [physical]));
  const metadata = await sharp(filtered).metadata();
  expect([metadata.comments, metadata.icc]).toEqual([undefined, undefined]);
  const raw = (png: Buffer) => sharp(png, { ignoreIcc: true }).raw().toBuffer();
  expect(await raw(filtered)).toEqual(await raw(plain));

  expect(withoutPngText(plain)).toBe(plain); // nothing to drop: no copy
  // a chunk that runs past the end is left as it is, with what follows, for the decoder to refuse
  const cut = upload.subarray(0, 33 + profile.length + 20);
  expect(withoutPngText(cut)).toEqual(Buffer.concat([plain.subarray(0, 33), cut.subarray(33 + profile.length)]));
});

test('a file that does not start with its IHDR is left whole; tens of thousands of chunks are walked in milliseconds, more refused', async () => {
  // Bug caught: a tEXt chunk before IHDR was dropped, turning a file the decoder (and `pace eval`) refuses into one
  // it reads.
  const misplaced = Buffer.concat([plain.subarray(0, 8), chunk('tEXt', Buffer.from('a\0b')), plain.subarray(8)]);
  await expect(sharp(misplaced, { failOn: 'error' }).metadata()).rejects.toThrow('IHDR');
  expect(withoutPngText(misplaced)).toBe(misplaced);

  // Bug caught: each chunk's type became a string and each kept chunk a Buffer of its own: 0.7 s on the event loop
  // and 97 MB for a 10 MB upload of 800,000 empty chunks. Now the walk reads headers as numbers, and stops past
  // MAX_PNG_CHUNKS.
  const empty = chunk('abCd', Buffer.alloc(0));
  const text = chunk('tEXt', Buffer.from('a\0b'));
  const room = MAX_PNG_CHUNKS - chunkTypes(plain).length; // chunks beside the plain image's
  const upload = withChunks(plain, [...Array<Buffer>(room - 1).fill(empty), text]);
  let fastest = Infinity; // of three walks: one GC pause or lost time slice does not decide it
  let filtered: Buffer = upload;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    filtered = withoutPngText(upload);
    fastest = Math.min(fastest, performance.now() - started);
  }
  expect(filtered).toEqual(withChunks(plain, Array<Buffer>(room - 1).fill(empty)));
  expect(fastest).toBeLessThan(100); // about 5 ms here
  const tooMany = withChunks(plain, Array<Buffer>(800_000).fill(empty));
  expect(() => withoutPngText(withChunks(plain, Array<Buffer>(room + 1).fill(empty)))).toThrow(HttpError);
  expect(() => withoutPngText(tooMany)).toThrow(
    `the PNG holds more than ${MAX_PNG_CHUNKS} chunks, far more than any image needs`,
  );
});

test('uploads whose zTXt chunks inflate to tens of MB are answered as the image without them, without inflating them', async () => {
  // Bug caught: sharp's header read inflated every text chunk into a string for JavaScript: 33 KB of zTXt (16
  // chunks of 2 MB each inflated) took 340 ms and 32 MB of heap per upload, so a few such uploads at once could
  // exhaust the server's memory; past about 32 MB in all, the decoder's cache limit refused a valid image (400).
  const bomb = withChunks(plain, Array<Buffer>(16).fill(textBomb(2 << 20)));
  const refusedBefore = withChunks(plain, [textBomb(64 << 20)]);
  expect([bomb.length, refusedBefore.length].every((length) => length < 100_000)).toBe(true);
  const model: Model = await createModel(spec, { pretrained: checkpoint });
  const { server, close } = createInferenceServer(model);
  try {
    const base = await listen(server);
    const answer = async (png: Buffer) => {
      const response = await postImage(base, png);
      return [response.status, await response.json()];
    };
    const expected = await answer(plain);
    expect(expected[0]).toBe(200);
    expect(await answer(refusedBefore)).toEqual(expected);
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    expect(await answer(bomb)).toEqual(expected);
    // Inflated, the text alone is 32 MB of heap until collected.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(8 << 20);
  } finally {
    await close();
    model.dispose();
  }
});
