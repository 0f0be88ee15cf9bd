import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { getRepoFolderName } from '@huggingface/hub';

import { lockHeldByLiveProcess, takeLock } from '../folder-lock';
import { processAlive, processNamespace } from '../process-alive';

/** A full commit hash, as the cache names snapshots. */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;
/** A blob name: a git object id (40 hex digits) or an LFS file's SHA-256 (64). */
const BLOB_NAME = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
/** Temporary files older than this are left over by a killed process and are removed. */
const STALE_MS = 24 * 3600 * 1000;
/**
 * A file of a process this host does not know is removed once unwritten this long: where its name does not say its
 * writer's PID namespace, a container on the host's network may still be writing it, and a transfer that writes
 * nothing for a minute is past the default stall timeout anyway.
 */
const ORPHAN_QUIET_MS = 60 * 1000;
/** This host in temporary files' names (a cache may be shared between hosts): letters, digits and '-'. */
const HOST = os.hostname().replace(/[^A-Za-z0-9-]+/g, '-');
/** This process's pid namespace in temporary files' names (8 hex digits of its hash), where /proc tells it. */
const NAMESPACE = (() => {
  const namespace = processNamespace();
  return namespace === undefined ? '' : `~${crypto.createHash('sha256').update(namespace).digest('hex').slice(0, 8)}`;
})();
/**
 * A temporary file's writer, from its name: `<label>.pid<pid>@<host>~<namespace>.<random>` (without `~<namespace>`
 * where /proc does not tell it, and in names written before it was added).
 */
const WRITER = /\.pid(\d+)@([A-Za-z0-9-]+)(~[0-9a-f]{8})?\.[0-9a-f]{12}$/;

/** How often a process waiting for another's transfer of a blob looks again. */
const BLOB_WAIT_MS = 250;
/** How long a wait for another process's transfer lasts before it is said (as huggingface_hub's lock logs it). */
export const BLOB_WAIT_SAID_MS = 10_000;

const isMissing = (error: unknown) => ['ENOENT', 'ENOTDIR'].includes((error as { code?: string }).code ?? '');

/**
 * One model repository in the cache, in huggingface_hub's layout (so Python and pace-peft share files):
 *
 *     <cacheDir>/models--<org>--<name>/
 *       blobs/<etag>                   the file's bytes; etag = the SHA-256 of an LFS file, else its git object id
 *       snapshots/<commit>/<file>      a relative symbolic link to ../../blobs/<etag>
 *       refs/<revision>                the commit the revision (branch or tag) pointed at, no newline
 *
 * Blobs, links and refs are each written under a temporary name and renamed into place, so a reader (or a second
 * process writing the same file) sees a file whole or not at all. Temporary files live in `.incomplete/` beside
 * the three folders, never in them.
 */
export class RepoCache {
  readonly folder: string;

  constructor(cacheDir: string, repo: string) {
    this.folder = path.join(cacheDir, getRepoFolderName({ type: 'model', name: repo }));
  }

  blobPath(etag: string): string {
    if (!BLOB_NAME.test(etag)) throw new Error(`'${etag}' is not a blob name`);
    return path.join(this.folder, 'blobs', etag);
  }

  snapshotPath(commit: string, file: string): string {
    if (!COMMIT_HASH.test(commit)) throw new Error(`'${commit}' is not a commit hash`);
    return path.join(this.folder, 'snapshots', commit, file);
  }

  refPath(revision: string): string {
    return path.join(this.folder, 'refs', revision);
  }

  /** The commit a revision resolves to in the cache: the revision itself when it is a commit hash, else its ref. */
  commitOf(revision: string): string | undefined {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = fs.readFileSync(this.refPath(revision), 'utf8').trim();
      return COMMIT_HASH.test(commit) ? commit : undefined;
    } catch (error) {
      if (isMissing(error) || (error as { code?: string }).code === 'EISDIR') return undefined;
      throw error;
    }
  }

  /** The snapshot's file, when it is there and leads to a regular file (a dangling link does not count). */
  cachedFile(commit: string, file: string): string | undefined {
    const location = this.snapshotPath(commit, file);
    try {
      return fs.statSync(location).isFile() ? location : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /**
   * Holds the right to transfer a blob, as huggingface_hub's per-blob lock does: processes fetching the same file at
   * once (the ranks of a job starting together on a cold cache) wait while one transfers it, rather than each
   * transferring its own copy (and each needing the room for one). Resolves with the release once this process
   * holds it, or with undefined once the blob is there. The lock is `.incomplete/<etag>.lock` (a folder lock:
   * a holder gone is detected, on another host by its silence); `signal` ends the wait. A wait that lasts
   * {@link BLOB_WAIT_SAID_MS} is told to `onWaiting`, once, with who holds the lock (a suspended process holds it
   * until it resumes).
   */
  async holdBlobTransfer(
    etag: string,
    signal?: AbortSignal,
    onWaiting?: (holder: string) => void,
  ): Promise<(() => void) | undefined> {
    const lock = path.join(await this.#incompleteFolder(), `${etag}.lock`);
    const started = Date.now();
    let said = false;
    for (;;) {
      if (this.hasBlob(etag)) return undefined;
      try {
        const release = takeLock(this.blobPath(etag), lock, { folder: 'download of', user: 'download' });
        // placed (and the lock let go) by another process since the look above: nothing left to transfer
        if (!this.hasBlob(etag)) return release;
        release();
        return undefined;
      } catch (error) {
        if (!lockHeldByLiveProcess(error)) throw error; // a lock to mend by hand is said at once
        if (!said && Date.now() - started >= BLOB_WAIT_SAID_MS) {
          said = true;
          onWaiting?.((error as Error).message);
        }
      }
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, BLOB_WAIT_MS));
    }
  }

  /** Whether the blob is there: blobs only ever appear whole and verified (renamed in after the checks). */
  hasBlob(etag: string): boolean {
    try {
      return fs.statSync(this.blobPath(etag)).isFile();
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /**
   * A fresh temporary path (for one writer) in `.incomplete/`, on the cache's file system so it can be renamed.
   * Its name says which process of which host writes it, so that what a killed process left is found.
   */
  async temporaryPath(label: string): Promise<string> {
    const folder = await this.#incompleteFolder();
    await this.#removeStale(folder);
    return path.join(folder, `${label}.pid${process.pid}@${HOST}${NAMESPACE}.${crypto.randomBytes(6).toString('hex')}`);
  }

  /**
   * Moves a complete, verified temporary file into `blobs/`, atomically (an existing copy is replaced by an equal
   * one).
   */
  async placeBlob(temporary: string, etag: string): Promise<void> {
    const blob = this.blobPath(etag);
    await fs.promises.mkdir(path.dirname(blob), { recursive: true });
    await fs.promises.rename(temporary, blob);
  }

  /**
   * Points `snapshots/<commit>/<file>` at the blob with a relative link, as huggingface_hub does (a copy where links
   * fail).
   */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const location = this.snapshotPath(commit, file);
    const blob = this.blobPath(etag);
    await fs.promises.mkdir(path.dirname(location), { recursive: true });
    const temporary = await this.temporaryPath(`${etag}.link`);
    try {
      try {
        await fs.promises.symlink(path.relative(path.dirname(location), blob), temporary);
      } catch {
        await fs.promises.copyFile(blob, temporary); // no symbolic links here (Windows without the right): a copy
        const copy = await fs.promises.open(temporary, 'r+');
        try {
          await copy.sync(); // like the blob itself: a crash leaves no snapshot file that is short of its blob
        } finally {
          await copy.close();
        }
      }
      await fs.promises.rename(temporary, location);
    } catch (error) {
      await fs.promises.rm(temporary, { force: true });
      throw error;
    }
    return location;
  }

  /** Records that `revision` points at `commit` (nothing for a commit hash itself). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const ref = this.refPath(revision);
    await fs.promises.mkdir(path.dirname(ref), { recursive: true });
    const temporary = await this.temporaryPath('ref');
    try {
      const handle = await fs.promises.open(temporary, 'w');
      try {
        await handle.writeFile(commit);
        await handle.sync(); // a crash leaves the old ref or the whole new one, never an empty file
      } finally {
        await handle.close();
      }
      await fs.promises.rename(temporary, ref);
    } catch (error) {
      await fs.promises.rm(temporary, { force: true });
      throw error;
    }
  }

  /** `.incomplete/`, where transfers write and take turns (made if missing). */
  async #incompleteFolder(): Promise<string> {
    const folder = path.join(this.folder, '.incomplete');
    await fs.promises.mkdir(folder, { recursive: true });
    return folder;
  }

  /**
   * Removes what killed processes left in `.incomplete/` (a download stopped by Ctrl-C may leave gigabytes): the
   * files of this host's processes that are gone (once unwritten for a minute), and any file older than a day (of
   * another host or container, or named before names said whose they are).
   */
  async #removeStale(folder: string): Promise<void> {
    const now = Date.now();
    for (const entry of await fs.promises.readdir(folder)) {
      const file = path.join(folder, entry);
      const writer = WRITER.exec(entry);
      // A writer of another pid namespace under this host's name may be alive whatever its pid says here.
      const here = writer !== null && writer[2] === HOST && (writer[3] ?? NAMESPACE) === NAMESPACE;
      const orphaned = here && !processAlive(Number(writer![1]));
      try {
        const quiet = now - (await fs.promises.lstat(file)).mtimeMs;
        if ((orphaned && quiet > ORPHAN_QUIET_MS) || quiet > STALE_MS) {
          await fs.promises.rm(file, { force: true });
        }
      } catch {
        // gone already (another process renamed or removed it)
      }
    }
  }
}
