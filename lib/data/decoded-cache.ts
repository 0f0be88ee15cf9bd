import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { loadTensors, readTensorHeader, saveTensors } from '../safetensors';
import type { Tensor } from '../tensor';
import type { ResizeMode } from './image-decode';
import type { SplitEntry } from './splits';

/** An image that could not be used, and why. */
export interface SkippedImage {
  path: string;
  line: number;
  reason: string;
}

/** What a decoded-image cache holds. */
export interface DecodedImages {
  images: Tensor;
  labels: Tensor;
  skipped: SkippedImage[];
}

const CACHE_KEY = 'pace_peft.decoded_cache_key';
const CONTENT_DIGEST = 'pace_peft.decoded_cache_digest';

/** SHA-256 of the cached tensors' shapes and bytes: a file damaged in place (same length) is rebuilt, not trusted. */
function contentDigest(images: Tensor, labels: Tensor): string {
  const hash = createHash('sha256');
  for (const stored of [images, labels]) {
    const values = stored.view();
    hash.update(`${stored.dtype}[${stored.shape.join(',')}]`);
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}

/** What the decoded pixels depend on: every file's path, label, size and time, and the decoding options. */
export function decodedCacheKey(
  entries: readonly SplitEntry[],
  options: { size: number; resize: ResizeMode; onBadImage?: 'error' | 'skip' },
): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ version: 1, size: options.size, resize: options.resize, bad: options.onBadImage }));
  for (const entry of entries) {
    let stamp = 'missing';
    try {
      const stat = fs.statSync(entry.path);
      stamp = `${stat.size}:${stat.mtimeMs}`;
    } catch {
      // a missing file is part of the key: it either fails the load or is skipped
    }
    hash.update(`${entry.path}\0${entry.label}\0${stamp}\n`);
  }
  return hash.digest('hex');
}

/**
 * The cache's contents when it was made with `key` and its bytes are the ones written; undefined when absent,
 * stale or damaged (then rebuilt).
 */
export async function readDecodedCache(file: string, key: string): Promise<DecodedImages | undefined> {
  if (!fs.existsSync(file)) return undefined;
  try {
    const header = await readTensorHeader(file);
    if (header.metadata?.[CACHE_KEY] !== key) return undefined;
    const { tensors, metadata } = await loadTensors(file);
    const { images, labels } = tensors;
    if (images === undefined || labels === undefined || metadata?.[CONTENT_DIGEST] !== contentDigest(images, labels)) {
      for (const loaded of Object.values(tensors)) loaded.dispose();
      return undefined;
    }
    return { images, labels, skipped: JSON.parse(metadata?.skipped ?? '[]') };
  } catch {
    return undefined;
  }
}

/** Writes the cache; a cache that cannot be written only costs the next run time, so it is a warning. */
export async function writeDecodedCache(file: string, key: string, decoded: DecodedImages): Promise<void> {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await saveTensors(
      file,
      { images: decoded.images, labels: decoded.labels },
      {
        metadata: {
          [CACHE_KEY]: key,
          [CONTENT_DIGEST]: contentDigest(decoded.images, decoded.labels),
          skipped: JSON.stringify(decoded.skipped),
        },
      },
    );
  } catch (error) {
    process.emitWarning(`pace-peft: could not write the decoded-image cache: ${(error as Error).message}`);
  }
}
