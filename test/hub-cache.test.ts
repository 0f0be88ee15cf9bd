// The blob transfer lock of the Hugging Face cache (lib/hub/cache.ts), without a Hub.
import fs from 'node:fs';
import path from 'node:path';

import { BLOB_WAIT_SAID_MS, RepoCache } from '../lib/hub/cache';
import { progressSink, type DownloadProgress } from '../lib/hub/progress';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('hub-cache');
afterAll(() => temp.cleanup());

const etag = 'a'.repeat(64);

test('a blob another process placed while this one took the lock is not transferred again', async () => {
  // Bug (review): the holder placed the file and let its lock go between this process's look for the blob and its
  // claim of the lock: the claim succeeded, and the whole file was transferred a second time.
  const cache = new RepoCache(path.join(temp.dir, 'placed'), 'org/model');
  fs.mkdirSync(path.dirname(cache.blobPath(etag)), { recursive: true });
  fs.writeFileSync(cache.blobPath(etag), 'weights');
  jest.spyOn(cache, 'hasBlob').mockReturnValueOnce(false); // the first look came before the file
  expect(await cache.holdBlobTransfer(etag)).toBeUndefined();
  expect(fs.readdirSync(path.join(cache.folder, '.incomplete'))).toEqual([]); // the lock taken was let go
});

test('a blob not in the cache is this process to transfer, under its lock', async () => {
  const cache = new RepoCache(path.join(temp.dir, 'absent'), 'org/model');
  const release = await cache.holdBlobTransfer(etag);
  expect(release).toBeInstanceOf(Function);
  expect(fs.readdirSync(path.join(cache.folder, '.incomplete'))).toEqual([`${etag}.lock`]);
  release!();
  expect(fs.readdirSync(path.join(cache.folder, '.incomplete'))).toEqual([]);
});

test('a wait for another process transferring the blob is said once, after 10 s, naming the holder', async () => {
  // Bug (review): a pull suspended with Ctrl-Z held its lock, and a fit waiting on the same file said nothing,
  // ever. Another claim of this process stands in for the other process (refused the same way, as live).
  jest.useFakeTimers();
  const stop = new AbortController(); // a failed check must not leave the waiter polling past the test
  let holder: (() => void) | undefined;
  try {
    const cache = new RepoCache(path.join(temp.dir, 'waiting'), 'org/model');
    holder = await cache.holdBlobTransfer(etag);
    const said: string[] = [];
    let settled = false;
    const timersBefore = jest.getTimerCount(); // the holder's heartbeat
    const waiter = cache.holdBlobTransfer(etag, stop.signal, (why) => said.push(why));
    void waiter.then(
      () => (settled = true),
      () => {},
    );
    // The waiter sets its first timer after real file-system work (mkdir, the lock's read): advancing the fake
    // clock before then would move time past nothing.
    for (let i = 0; jest.getTimerCount() === timersBefore && i < 2_000; i++) await fs.promises.stat(temp.dir);
    expect(jest.getTimerCount()).toBeGreaterThan(timersBefore);
    await jest.advanceTimersByTimeAsync(BLOB_WAIT_SAID_MS - 500);
    expect(said).toEqual([]);
    await jest.advanceTimersByTimeAsync(20_000);
    expect(said).toEqual([expect.stringMatching(/is in use by another download of this process \(\d+\)$/)]);
    expect(settled).toBe(false);
    holder!();
    holder = undefined;
    await jest.advanceTimersByTimeAsync(1_000);
    const release = await waiter;
    expect(release).toBeInstanceOf(Function);
    release!();
    expect(said).toHaveLength(1);
  } finally {
    stop.abort();
    holder?.();
    await jest.advanceTimersByTimeAsync(1_000); // the aborted waiter's last poll
    jest.useRealTimers();
  }
});

test("a progress function is told of the wait with the file's size; a quiet one hears nothing", () => {
  const calls: DownloadProgress[] = [];
  progressSink((progress) => calls.push(progress), 'org/model').waiting('model.safetensors', 1234, 'held by 7');
  expect(calls).toEqual([{ file: 'model.safetensors', bytes: 0, total: 1234, waitingFor: 'held by 7' }]);
  const write = jest.spyOn(process.stderr, 'write');
  progressSink(false, 'org/model').waiting('model.safetensors', 1234, 'held by 7');
  expect(write).not.toHaveBeenCalled();
  write.mockRestore();
});
