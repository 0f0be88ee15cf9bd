import fs from 'node:fs';
import zlib from 'node:zlib';

import { PaceFileError, PaceInputError, PaceShapeError } from '../errors';
import { tensor } from '../tensor';
import { TensorDataset, type Normalization } from './dataset';

/** The contents of an IDX file (the MNIST / Fashion-MNIST format): its dimensions and uint8 data. */
export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

/** Reads an IDX file of unsigned bytes, gzipped or not. Errors name the file and the problem. */
export function readIdx(file: string): IdxArray {
  let bytes: Buffer = fs.readFileSync(file);
  const fail = (problem: string): never => {
    throw new PaceFileError(`IDX file '${file}': ${problem}`);
  };
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (error) {
      fail(`corrupt gzip data (${(error as Error).message})`);
    }
  }
  if (bytes.length < 4) fail(`only ${bytes.length} bytes; an IDX file starts with a 4-byte magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) fail('bad magic number (not an IDX file)');
  if (bytes[2] !== 0x08) fail(`element type 0x${bytes[2].toString(16)} is not unsigned bytes (0x08)`);
  const rank = bytes[3];
  if (rank < 1 || bytes.length < 4 + 4 * rank) fail(`truncated header (rank ${rank})`);
  const shape = Array.from({ length: rank }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const count = shape.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * rank;
  if (bytes.length - start !== count) {
    fail(`dimensions [${shape.join(',')}] need ${count} bytes of data, the file has ${bytes.length - start}`);
  }
  return { shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, count) };
}

/**
 * An image-classification dataset from a pair of IDX files (MNIST, Fashion-MNIST: `train-images-idx3-ubyte.gz`,
 * `train-labels-idx1-ubyte.gz`), kept as uint8 pixels and normalised per batch with `normalization`.
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
  if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new PaceShapeError(`IDX file '${labelsFile}': ${labels.shape[0]} labels for ${images.shape[0]} images`);
  }
  const numClasses = options.numClasses ?? 256;
  const bad = labels.data.findIndex((label) => label >= numClasses);
  if (bad >= 0) {
    throw new PaceInputError(
      `IDX file '${labelsFile}': label ${labels.data[bad]} at index ${bad} is not below ${numClasses}`,
    );
  }
  return new TensorDataset(
    tensor(images.data, images.shape),
    tensor(BigInt64Array.from(labels.data, (label) => BigInt(label))),
    { normalization: options.normalization },
  );
}
