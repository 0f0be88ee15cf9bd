import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { removeKilledWritersFiles, writeFileAtomic } from '../files';
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
  /** Images of their own sizes: their extents `[N, 2]` (the images packed `[P, 3]`). */
  extents?: Tensor;
  skipped: SkippedImage[];
}

const CACHE_KEY = 'pace_peft.decoded_cache_key';

/**
 * Where a cache's SHA-256 is kept: `<cache>.sha256`, of the whole file as written, read back from the disk in
 * chunks (a cache of 50,000 images at 224² is 7.5 GB, more than one JavaScript buffer holds). A file changed in
 * place, of the same length, is rebuilt rather than trusted; a cache without its digest is rebuilt too.
 */
const digestFileOf = (file: string) => `${file}.sha256`;

/** How long a temporary file of a writer that looks gone must lie untouched before it is removed. */
const KILLED_WRITER_IDLE_MS = 10 * 60_000;

async function fileDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 24 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * What the decoded pixels depend on: every file's path, label and stamp (its inode, size, modification and change
 * time: size and modification time alone miss same-size files swapped by rename, or replaced with their times kept,
 * as `cp -p`, `rsync -t` and archives keep them, and the change time cannot be set back; not its device, which a
 * remount or a container's restart renumbers), and the decoding options.
 */
export function decodedCacheKey(
  entries: readonly SplitEntry[],
  options: { size: number; resize: ResizeMode; onBadImage?: 'error' | 'skip' },
): string {
  const hash = createHash('sha256');
  // version 2: few-shot and FGVC resizes became bilinear, and VTAB's enlargements Pillow's (not libvips')
  // version 3: embedded colour profiles are ignored, as Pillow ignores them
  // version 4: CMYK converted in Pillow's arithmetic; every stretch and cover resized as Pillow resizes
  hash.update(JSON.stringify({ version: 4, size: options.size, resize: options.resize, bad: options.onBadImage }));
  for (const entry of entries) {
    let stamp = 'missing';
    try {
      const stat = fs.statSync(entry.path, { bigint: true });
      stamp = `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
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
  // What a writer killed mid-write (Ctrl-C while loading) left, its digest's too: nothing else would remove it.
  removeKilledWritersFiles(path.dirname(file), { target: path.basename(file), idleMs: KILLED_WRITER_IDLE_MS });
  if (!fs.existsSync(file)) return undefined;
  try {
    const header = await readTensorHeader(file);
    if (header.metadata?.[CACHE_KEY] !== key) return undefined;
    const recorded = fs.readFileSync(digestFileOf(file), 'utf8').trim();
    if (recorded !== (await fileDigest(file))) return undefined;
    const { tensors, metadata } = await loadTensors(file);
    const { images, labels, extents } = tensors;
    return { images, labels, ...(extents && { extents }), skipped: JSON.parse(metadata?.skipped ?? '[]') };
  } catch {
    return undefined;
  }
}

/** Writes the cache; a cache that cannot be written only costs the next run time, so it is a warning. */
export async function writeDecodedCache(file: string, key: string, decoded: DecodedImages): Promise<void> {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.rmSync(digestFileOf(file), { force: true }); // until the new digest is written, the cache is not trusted
    await saveTensors(
      file,
      { images: decoded.images, labels: decoded.labels, ...(decoded.extents && { extents: decoded.extents }) },
      { metadata: { [CACHE_KEY]: key, skipped: JSON.stringify(decoded.skipped) } },
    );
    writeFileAtomic(digestFileOf(file), `${await fileDigest(file)}\n`);
  } catch (error) {
    process.emitWarning(`pace-peft: could not write the decoded-image cache: ${(error as Error).message}`);
  }
}
