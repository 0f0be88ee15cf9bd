// The blob transfer lock of the Hugging Face cache (lib/hub/cache.ts), without a Hub.
import fs from 'node:fs';
import path from 'node:path';

import { RepoCache } from '../lib/hub/cache';
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
