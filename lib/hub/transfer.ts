import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ReadableStreamDefaultReader, ReadableStreamReadResult } from 'node:stream/web';

import { PaceFileError, PaceNetworkError, PaceNotFoundError, PaceWriteError } from '../errors';
import { writeFailure } from '../files';
import type { RepoCache } from './cache';
import { waitOrStop, type HubClient, type RemoteFile } from './client';
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
  /** A transfer slower than this over a window of `stallMs` is abandoned. */
  minBytesPerSecond: number;
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
 * How often a transfer that broke off is taken up again where it stopped, and the waits before each (as
 * huggingface_hub's download resumes its `.incomplete` file, with up to five retries).
 */
export const RESUME_WAITS_MS = [500, 1_000, 2_000, 4_000, 8_000];

/** The stalls that were silence (not a slow pace): the connection may be dead, and another one asked. */
const silences = new WeakSet<object>();

/** `promise`'s value, `undefined` when `ms` pass first, the signal's reason when it stops first. */
async function within<T>(promise: Promise<T>, ms: number, signal: AbortSignal | undefined): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let stop: (() => void) | undefined;
  const interrupted = new Promise<undefined>((resolve, reject) => {
    timer = setTimeout(() => resolve(undefined), ms);
    stop = () => reject(signal?.reason);
    signal?.addEventListener('abort', stop, { once: true });
  });
  try {
    return await Promise.race([promise, interrupted]);
  } finally {
    clearTimeout(timer);
    if (stop) signal?.removeEventListener('abort', stop);
  }
}

/**
 * A transfer's chunks, held to a pace: a PaceNetworkError when none comes for `stallMs`, or when a window of
 * `stallMs` brings fewer than `minBytesPerSecond` (a server that drips a byte at a time never stalls, and would
 * keep a download going for weeks); the signal's reason when it stops the transfer first. Both clocks run only
 * while a read waits: time the consumer takes between reads (a slow disk, a busy event loop) is not the server's.
 */
class PacedReader {
  #pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  #waitingSince = 0; // when the pending read was asked for
  #waitedBefore = 0; // the reads' waits before it, summed
  #windowStart = 0; // on that clock of waiting time
  #windowBytes = 0;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly stallMs: number,
    private readonly minBytesPerSecond: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** The next chunk; `describe` says where the transfer stands, for a failure. */
  async read(describe: () => string): Promise<ReadableStreamReadResult<Uint8Array>> {
    for (;;) {
      this.signal?.throwIfAborted();
      if (this.#pending === undefined) {
        this.#waitingSince = performance.now();
        this.#pending = this.reader.read();
        // A read left pending by a stop or a stall fails later, when the stream errors (the library errors it with
        // `undefined` once the stop aborts its fetch): that is no news, and unheard it would end the process.
        this.#pending.catch(() => {});
      }
      const now = performance.now();
      const waiting = now - this.#waitingSince;
      if (waiting >= this.stallMs) {
        const silence = new PaceNetworkError(`${describe()}: no data for ${this.stallMs / 1000} s`);
        silences.add(silence);
        throw silence;
      }
      const waited = this.#waitedBefore + waiting;
      if (waited - this.#windowStart >= this.stallMs) this.#endWindow(describe, waited);
      const wake = Math.min(this.stallMs - waiting, this.#windowStart + this.stallMs - waited);
      const result = await within(this.#pending, Math.max(1, wake), this.signal);
      if (result === undefined) continue;
      this.#pending = undefined;
      this.#waitedBefore += performance.now() - this.#waitingSince;
      if (!result.done) this.#windowBytes += result.value.byteLength;
      return result;
    }
  }

  #endWindow(describe: () => string, waited: number): void {
    const needed = (this.minBytesPerSecond * this.stallMs) / 1000;
    if (this.#windowBytes < needed) {
      throw new PaceNetworkError(
        `${describe()}: ${this.#windowBytes} bytes in the last ${this.stallMs / 1000} s, slower than the ` +
          `minimum of ${this.minBytesPerSecond} bytes/s (minBytesPerSecond)`,
      );
    }
    this.#windowStart = waited;
    this.#windowBytes = 0;
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
 * Refuses a transfer the disk could not hold at its start, rather than filling the disk for an hour and failing at
 * the end. (Others may write meanwhile: a disk that fills anyway is still a PaceWriteError, from the writes.)
 */
async function checkRoomFor(size: number, folder: string, what: string): Promise<void> {
  const disk = await fs.promises.statfs(folder).catch(() => undefined); // (no statfs: the writes will tell)
  if (!disk) return;
  const free = disk.bavail * disk.bsize;
  const formatBytes = (bytes: number) => `${bytes} bytes (${(bytes / 2 ** 30).toFixed(2)} GiB)`;
  if (size > free) {
    throw new PaceWriteError(
      `${what}: it is ${formatBytes(size)} and the disk of '${folder}' has ${formatBytes(free)} free; ` +
        'nothing was downloaded (free some space, or set cacheDir or HF_HUB_CACHE to a larger disk)',
    );
  }
}

/**
 * Downloads one file into the cache's `blobs/`: the bytes go to a temporary file (hashed as they arrive), which is
 * fsynced, checked for its size and hash (and its size on disk), and only then renamed to `blobs/<etag>`. Any
 * failure removes the temporary file, so `blobs/` only ever holds complete, verified files. Processes fetching the
 * same file take turns on its lock first (RepoCache.holdBlobTransfer); were two to write it anyway, each writes its
 * own temporary file, and the second rename replaces the first's copy with an identical one. A transfer stopped by
 * its signal removes its temporary file the same way. A connection that breaks off or goes silent is asked for
 * the rest (see {@link RESUME_WAITS_MS}); one slower than the minimum pace is not.
 */
export async function transferToCache(t: Transfer): Promise<void> {
  const { file, name } = t;
  if (!SAFE_FILE.test(file.path)) {
    throw new PaceFileError(`pretrained '${name}': refusing to download ${file.path} (only safetensors, npz and JSON)`);
  }
  const what = `pretrained '${name}': ${file.path} of ${t.repo}`;
  // Before the transfer opens: a cache that cannot take the file would leave it open, paused mid-body.
  const temporary = await t.cache.temporaryPath(file.etag);
  await checkRoomFor(file.size, path.dirname(temporary), what);
  // The file's bytes from `from` on, read at the transfer's pace.
  const openFrom = async (from: number) => {
    const stream = await t.client.open(t.repo, t.commit, file, from);
    if (!stream) throw new PaceNotFoundError(`${what} not found at commit ${t.commit}`);
    const reader = stream.getReader();
    return { reader, paced: new PacedReader(reader, t.stallMs, t.minBytesPerSecond, t.signal) };
  };
  let { reader, paced } = await openFrom(0);
  const { hash, expected, kind } = expectedHash(file);
  let handle: fs.promises.FileHandle | undefined;
  let bytes = 0;
  let finished = false;
  let resumes = 0;
  let resumedFrom: number | undefined; // the byte the last resume asked from, until its answer is checked
  try {
    handle = await fs.promises.open(temporary, 'wx');
    t.progress.start(file.path, file.size);
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        const stalled = () => `${what}: stalled after ${bytes} of ${file.size} bytes`;
        chunk = await paced.read(stalled);
      } catch (error) {
        if (t.signal?.aborted) throw error;
        // The request was refused (a first one, or a resume: an expired link, a file gone): said as the refusal it
        // is, by the status the Hub's failure names, not retried; also when its body stalled after the headers.
        if ((bytes === 0 || resumedFrom !== undefined) && (t.client.last?.status ?? 0) >= 400) {
          throw silences.has(error as object) ? new Error((error as Error).message) : error;
        }
        // A silent connection is asked again, as huggingface_hub resumes after a read timeout; a slow one is not.
        const silent = silences.has(error as object) && bytes > 0;
        if (error instanceof PaceNetworkError && !silent) throw error;
        // Nothing came: the server never answered.
        if (bytes === 0) {
          const why = rootCause(t.client.failure ?? error) || 'connection lost';
          throw new PaceNetworkError(`${what}: no bytes arrived (${why})`, { cause: t.client.failure ?? error });
        }
        // Every byte came before the connection went (a chunked body cut before its end): the checks decide.
        if (bytes === file.size) break;
        if (resumes < RESUME_WAITS_MS.length) {
          // Taken up where it stopped, the bytes so far kept (and hashed) as they are.
          await reader.cancel().catch(() => {});
          await waitOrStop(RESUME_WAITS_MS[resumes++], t.signal);
          ({ reader, paced } = await openFrom(bytes));
          resumedFrom = bytes;
          continue;
        }
        const tries = resumes > 0 ? `, resumed ${resumes} time${resumes > 1 ? 's' : ''}` : '';
        if (silent) throw new PaceNetworkError(`${(error as Error).message} (${tries.slice(2)})`, { cause: error });
        const why = rootCause(t.client.failure ?? error) || 'connection lost';
        throw new PaceFileError(
          `${what}: the transfer broke off after ${bytes} of ${file.size} bytes (${why}${tries}); nothing was cached`,
          { cause: error },
        );
      }
      if (resumedFrom !== undefined) {
        // The rest only, or nothing: a server that answers a range with the whole file (200) cannot resume.
        const { status, contentRange } = t.client.last ?? {};
        if (status !== 206 || !contentRange?.startsWith(`bytes ${resumedFrom}-`)) {
          throw new PaceFileError(
            `${what}: the transfer broke off after ${bytes} of ${file.size} bytes, and the server does not resume ` +
              `a transfer (it answered the rest with ${status === 206 ? (contentRange ?? 'no Content-Range') : `status ${status}`}); ` +
              'nothing was cached',
          );
        }
        resumedFrom = undefined;
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
