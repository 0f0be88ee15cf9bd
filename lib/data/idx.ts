import buffer from 'node:buffer';
import fs from 'node:fs';
import zlib from 'node:zlib';

import { PaceFileError, PaceShapeError } from '../errors';
import { tensor } from '../tensor';
import { TensorDataset, type Normalization } from './dataset';
import { fsError } from './fs-context';
import { checkLabelsBelow } from './labels';

/** The contents of an IDX file (the MNIST / Fashion-MNIST format): its dimensions and uint8 data. */
export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

/** The largest header: a 4-byte magic number and 255 dimensions of 4 bytes. */
const MAX_HEADER_BYTES = 4 + 4 * 255;
/** Deflate's best ratio: a gzip file cannot inflate to more than this many times its size. */
const MAX_DEFLATE_RATIO = 1032;

interface IdxHeader {
  shape: number[];
  /** Where the data starts, and how many bytes the dimensions need. */
  start: number;
  count: number;
}

/**
 * Reads an IDX file of unsigned bytes, gzipped or not. Errors name the file and the problem; a gzipped file is
 * inflated only as far as its header says (one that inflates to more is refused without inflating the rest).
 */
export function readIdx(file: string): IdxArray {
  const fail = (problem: string): never => {
    throw new PaceFileError(`IDX file '${file}': ${problem}`);
  };
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw fsError(error, `IDX file '${file}'`);
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = inflateIdx(bytes, fail);
  const { shape, start, count } = parseHeader(bytes, fail);
  if (bytes.length - start !== count) {
    fail(`dimensions [${shape.join(',')}] need ${count} bytes of data, the file has ${bytes.length - start}`);
  }
  return { shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, count) };
}

function parseHeader(bytes: Buffer, fail: (problem: string) => never): IdxHeader {
  if (bytes.length < 4) fail(`only ${bytes.length} bytes; an IDX file starts with a 4-byte magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) fail('bad magic number (not an IDX file)');
  if (bytes[2] !== 0x08) fail(`element type 0x${bytes[2].toString(16)} is not unsigned bytes (0x08)`);
  const rank = bytes[3];
  if (rank < 1 || bytes.length < 4 + 4 * rank) fail(`truncated header (rank ${rank})`);
  const shape = Array.from({ length: rank }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  return { shape, start: 4 + 4 * rank, count: shape.reduce((a, b) => a * b, 1) };
}

/** The inflated file, its header read from the first inflated bytes and the rest bounded by what it announces. */
function inflateIdx(gzipped: Buffer, fail: (problem: string) => never): Buffer {
  const { shape, start, count } = parseHeader(inflatePrefix(gzipped, fail), fail);
  const expected = start + count;
  if (expected > gzipped.length * MAX_DEFLATE_RATIO || expected >= buffer.constants.MAX_LENGTH) {
    fail(`dimensions [${shape.join(',')}] need ${count} bytes of data, more than ${gzipped.length} gzipped bytes hold`);
  }
  try {
    return zlib.gunzipSync(gzipped, { maxOutputLength: expected + 1 });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      return fail(`inflates to more than the ${count} bytes of data its dimensions [${shape.join(',')}] need`);
    }
    return fail(`corrupt gzip data (${(error as Error).message})`);
  }
}

/** The most a prefix is inflated to while the header is looked for: far more than a header, bounded all the same. */
const PREFIX_OUTPUT = 1 << 20;

/**
 * The first inflated bytes (enough for any header, or all there are), inflating growing prefixes of the input, each
 * to at most {@link PREFIX_OUTPUT} bytes. A prefix that inflates to more (empty blocks, then a run of zeros that
 * packs 1000:1) is bisected down to one that does not: a byte of deflate data adds at most a few KB.
 */
function inflatePrefix(gzipped: Buffer, fail: (problem: string) => never): Buffer {
  const inflate = (length: number): Buffer | undefined => {
    try {
      return zlib.gunzipSync(gzipped.subarray(0, length), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        maxOutputLength: PREFIX_OUTPUT,
      });
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
      return fail(`corrupt gzip data (${(error as Error).message})`);
    }
  };
  let fits: { length: number; head: Buffer } = { length: 0, head: Buffer.alloc(0) };
  for (let length = 64; ; length = Math.min(length * 4, gzipped.length)) {
    const head = inflate(length);
    if (head === undefined) {
      let over = length;
      while (over - fits.length > 1) {
        const middle = Math.floor((fits.length + over) / 2);
        const inflated = inflate(middle);
        if (inflated === undefined) over = middle;
        else fits = { length: middle, head: inflated };
      }
      return fits.head;
    }
    if (head.length >= MAX_HEADER_BYTES || length >= gzipped.length) return head;
    fits = { length, head };
  }
}

/**
 * An image-classification dataset from a pair of IDX files (MNIST, Fashion-MNIST: `train-images-idx3-ubyte.gz`,
 * `train-labels-idx1-ubyte.gz`), kept as uint8 grey pixels `[N, H, W, 1]` (so pixel augmentation applies) and
 * normalised per batch with `normalization`. Images must be `[N, H, W]` with H and W above 0, labels `[N]`, each
 * below `numClasses` (when given; 256 otherwise).
 */
export function loadIdxDataset(
  imagesFile: string,
  labelsFile: string,
  options: { normalization: Normalization; numClasses?: number },
): TensorDataset {
  const images = readIdx(imagesFile);
  const labels = readIdx(labelsFile);
  if (images.shape.length !== 3) {
    throw new PaceShapeError(`IDX file '${imagesFile}': images must be [N, H, W], got [${images.shape.join(',')}]`);
  }
  if (images.shape[1] === 0 || images.shape[2] === 0) {
    throw new PaceShapeError(`IDX file '${imagesFile}': images of ${images.shape[1]}x${images.shape[2]} pixels`);
  }
  if (labels.shape.length !== 1) {
    throw new PaceShapeError(
      `IDX file '${labelsFile}': labels must be one-dimensional [N], got [${labels.shape.join(',')}]`,
    );
  }
  if (labels.shape[0] !== images.shape[0]) {
    throw new PaceShapeError(`IDX file '${labelsFile}': ${labels.shape[0]} labels for ${images.shape[0]} images`);
  }
  checkLabelsBelow(labels.data, options.numClasses ?? 256, `IDX file '${labelsFile}'`);
  return new TensorDataset(
    tensor(images.data, [...images.shape, 1]),
    tensor(BigInt64Array.from(labels.data, (label) => BigInt(label))),
    { normalization: options.normalization },
  );
}
