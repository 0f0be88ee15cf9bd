import crypto from 'node:crypto';
import fs from 'node:fs';
import type { ReadableStreamDefaultReader, ReadableStreamReadResult } from 'node:stream/web';

import { PaceFileError, PaceNetworkError, PaceNotFoundError, PaceWriteError } from '../errors';
import { writeFailure } from '../files';
import type { RepoCache } from './cache';
import type { HubClient, RemoteFile } from './client';
import { rootCause } from './failures';
import type { ProgressSink } from './progress';

/** Only these are ever downloaded: safetensors and `.npz` weights (plain arrays) and JSON configs, never pickles. */
const SAFE_FILE = /\.(safetensors|npz|json)$/;

/** What one transfer needs. */
export interface Transfer {
  client: HubClient;
  cache: RepoCache;
  repo: string;
  commit: string;
  file: RemoteFile;
  progress: ProgressSink;
  /** A transfer that receives nothing for this long is abandoned. */
  stallMs: number;
  /** The pretrained name as given, for messages. */
  name: string;
  /** Stops the transfer: it then rejects with the signal's reason, its temporary file removed. */
  signal?: AbortSignal;
}

/** The hash the bytes must have: LFS files' SHA-256, else the git blob id (SHA-1 of `blob <size>\0` and the bytes). */
function expectedHash(file: RemoteFile): { hash: crypto.Hash; expected: string; kind: string } {
  if (file.sha256) return { hash: crypto.createHash('sha256'), expected: file.sha256, kind: 'SHA-256' };
  const hash = crypto.createHash('sha1').update(`blob ${file.size}\0`);
  return { hash, expected: file.gitOid ?? '', kind: 'git blob id' };
}

/**
 * The next chunk; a PaceNetworkError when none comes within `stallMs`, the signal's reason when it stops the
 * transfer first (the read is then cancelled).
 */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  stallMs: number,
  describe: () => string,
  signal: AbortSignal | undefined,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  signal?.throwIfAborted();
  let timer: NodeJS.Timeout | undefined;
  let stop: (() => void) | undefined;
  const interrupted = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PaceNetworkError(`${describe()}: no data for ${stallMs / 1000} s`)), stallMs);
    stop = () => reject(signal?.reason);
    signal?.addEventListener('abort', stop, { once: true });
  });
  try {
    return await Promise.race([reader.read(), interrupted]);
  } finally {
    clearTimeout(timer);
    if (stop) signal?.removeEventListener('abort', stop);
  }
}

/** A write into the cache, its failure (a full disk, a file-size limit) a PaceWriteError naming the model and file. */
async function cacheWrite<T>(write: () => Promise<T>, temporary: string, what: string): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw new PaceWriteError(`${what}: ${writeFailure(error, temporary).message}; nothing was cached`, {
      cause: error,
    });
  }
}

/** All of `data`, at the file's position: one write may take fewer bytes (a file-size limit, a disk filling up). */
async function writeAll(
  handle: fs.promises.FileHandle,
  data: Uint8Array,
  temporary: string,
  what: string,
): Promise<void> {
  for (let offset = 0; offset < data.byteLength;) {
    const { bytesWritten } = await cacheWrite(
      () => handle.write(data, offset, data.byteLength - offset),
      temporary,
      what,
    );
    if (bytesWritten === 0) {
      throw new PaceWriteError(`${what}: '${temporary}' took no more bytes; nothing was cached`);
    }
    offset += bytesWritten;
  }
}

/**
 * Downloads one file into the cache's `blobs/`: the bytes go to a temporary file (hashed as they arrive), which is
 * fsynced, checked for its size and hash (and its size on disk), and only then renamed to `blobs/<etag>`. Any
 * failure removes the temporary file, so `blobs/` only ever holds complete, verified files. Two processes fetching the same file
 * each write their own temporary file and rename it into place; the second rename replaces the first's copy
 * with an identical one. A transfer stopped by its signal removes its temporary file the same way.
 */
export async function transferToCache(t: Transfer): Promise<void> {
  const { file, name } = t;
  if (!SAFE_FILE.test(file.path)) {
    throw new PaceFileError(`pretrained '${name}': refusing to download ${file.path} (only safetensors, npz and JSON)`);
  }
  const what = `pretrained '${name}': ${file.path} of ${t.repo}`;
  const stream = await t.client.open(t.repo, t.commit, file);
  if (!stream) throw new PaceNotFoundError(`${what} not found at commit ${t.commit}`);
  const temporary = await t.cache.temporaryPath(file.etag);
  const reader = stream.getReader();
  const { hash, expected, kind } = expectedHash(file);
  let handle: fs.promises.FileHandle | undefined;
  let bytes = 0;
  let finished = false;
  try {
    handle = await fs.promises.open(temporary, 'wx');
    t.progress.start(file.path, file.size);
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        const stalled = () => `${what}: stalled after ${bytes} of ${file.size} bytes`;
        chunk = await readWithin(reader, t.stallMs, stalled, t.signal);
      } catch (error) {
        if (error instanceof PaceNetworkError || t.signal?.aborted) throw error;
        // Nothing came: the server refused the transfer (the Hub's failure names its HTTP status) or never answered.
        if (bytes === 0 && (t.client.last?.status ?? 0) >= 400) throw error;
        if (bytes === 0) {
          const why = rootCause(t.client.failure ?? error) || 'connection lost';
          throw new PaceNetworkError(`${what}: no bytes arrived (${why})`, { cause: t.client.failure ?? error });
        }
        throw new PaceFileError(
          `${what}: the transfer broke off after ${bytes} of ${file.size} bytes (${rootCause(error) || 'connection lost'}); nothing was cached`,
          { cause: error },
        );
      }
      if (chunk.done) break;
      bytes += chunk.value.byteLength;
      if (bytes > file.size) {
        throw new PaceFileError(
          `${what}: received more than the ${file.size} bytes the Hub announced; nothing was cached`,
        );
      }
      hash.update(chunk.value);
      await writeAll(handle, chunk.value, temporary, what);
      t.progress.update(bytes);
    }
    finished = true;
    if (bytes !== file.size) {
      throw new PaceFileError(`${what}: truncated transfer, ${bytes} of ${file.size} bytes; nothing was cached`);
    }
    const actual = hash.digest('hex');
    if (actual !== expected) {
      throw new PaceFileError(
        `${what}: checksum mismatch, ${kind} ${actual} where the Hub says ${expected}; nothing was cached`,
      );
    }
    await cacheWrite(() => handle!.sync(), temporary, what);
    const written = (await handle.stat()).size;
    if (written !== file.size) {
      throw new PaceWriteError(
        `${what}: ${written} of its ${file.size} bytes reached '${temporary}'; nothing was cached`,
      );
    }
    await handle.close();
    handle = undefined;
    await t.cache.placeBlob(temporary, file.etag);
  } finally {
    t.progress.stop();
    if (!finished) await reader.cancel().catch(() => {});
    await handle?.close().catch(() => {});
    await fs.promises.rm(temporary, { force: true });
  }
}
