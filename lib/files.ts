// Writing files so that readers and crashes never see half of one.
import fs from 'node:fs';
import path from 'node:path';

import { type PaceError, PaceNotFoundError, PaceWriteError } from './errors';
import { processAlive } from './process-alive';

const writeProblems: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EFBIG: 'the file is larger than this process may write (a file-size limit: ulimit -f)',
  EISDIR: 'a folder stands in its place',
};

/**
 * A failed write of `file` (Node's error) as a PaceError naming the file and the reason: its folder missing is a
 * PaceNotFoundError; a full disk, a read-only file system or a refused permission a PaceWriteError.
 */
export function writeFailure(error: unknown, file: string): PaceError {
  const { code, message } = error as NodeJS.ErrnoException;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new PaceNotFoundError(`cannot write '${file}': its folder does not exist`, { cause: error });
  }
  const reason = (code && writeProblems[code]) ?? message;
  return new PaceWriteError(`cannot write '${file}': ${reason}${code ? ` (${code})` : ''}`, { cause: error });
}

/**
 * `mkdir -p`. Node's recursive mkdir reports ENOENT for other failures (a read-only file system): the first missing
 * folder is then made alone, which fails with the real reason.
 */
export function makeFolder(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    let first = path.resolve(dir);
    while (!fs.existsSync(path.dirname(first))) first = path.dirname(first);
    fs.mkdirSync(first);
    throw error;
  }
}

/**
 * Makes a folder's entries (a rename or link just done in it) durable. Filesystems that cannot sync a folder
 * (EINVAL, ENOTSUP) have nothing more to give.
 */
export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw error;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Gives `file` a second name `to`, failing with EEXIST when `to` exists. On a file system without hard links
 * (exFAT, FAT, some network and FUSE mounts: EPERM, ENOTSUP, ENOSYS, EXDEV) `to` is an exclusive copy instead,
 * briefly empty while its bytes are copied, and synced to disk.
 */
export function linkOrCopyExclusive(file: string, to: string): void {
  try {
    fs.linkSync(file, to);
  } catch (error) {
    if (!NO_HARD_LINKS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    fs.copyFileSync(file, to, fs.constants.COPYFILE_EXCL);
    const fd = fs.openSync(to, 'r+');
    try {
      fs.fsyncSync(fd); // as durable as the link it stands for
    } finally {
      fs.closeSync(fd);
    }
  }
}

const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

let temporaries = 0;

/**
 * Opens a new temporary file beside `file`, created here (O_EXCL): never a file or link already there, such as one
 * planted in a shared folder, a leftover of a killed process whose pid this one has, or another write's in this
 * process. `named` learns its name once it is this call's to remove.
 */
function openTemporary(file: string, named: (temp: string) => void): number {
  for (let attempt = 0; ; attempt++) {
    const temp = `${file}.tmp-${process.pid}-${++temporaries}`;
    try {
      const fd = fs.openSync(temp, 'wx');
      named(temp);
      return fd;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 100) throw error;
    }
  }
}

/**
 * Writes a file through a temporary name, fsync, rename and a sync of its folder, so readers never see half of
 * it and a crash leaves the old file or the new one. A failed write leaves no temporary file behind, and is a
 * {@link writeFailure}.
 */
export function writeFileAtomic(file: string, text: string): void {
  let temp = '';
  try {
    const fd = openTemporary(file, (name) => (temp = name));
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (error) {
    if (temp) fs.rmSync(temp, { force: true });
    throw writeFailure(error, file);
  }
  try {
    syncDirectory(path.dirname(file));
  } catch (error) {
    throw writeFailure(error, file);
  }
}

/** A writer's temporary file: `<name>.tmp-<pid>` or `<name>.tmp-<pid>-<n>` (the native writer's). */
export const TEMPORARY_NAME = /\.tmp-(\d+)(-\d+)?$/;

/**
 * Removes from `dir` the temporary files of writers that are gone from this host (a process killed mid-write
 * leaves its file, gigabytes for a decoded-image cache): those of `target` only when given, and only those left
 * untouched for `idleMs` when given (in a folder no lock guards, a writer of another host sharing it looks gone
 * from here while it writes).
 */
export function removeKilledWritersFiles(
  dir: string,
  { target, idleMs }: { target?: string; idleMs?: number } = {},
): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return; // no folder, nothing left behind
  }
  for (const name of names) {
    if (target !== undefined && !name.startsWith(`${target}.`)) continue;
    const pid = TEMPORARY_NAME.exec(name)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    const file = path.join(dir, name);
    if (idleMs !== undefined) {
      const modified = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
      if (modified === undefined || Date.now() - modified < idleMs) continue;
    }
    fs.rmSync(file, { force: true });
  }
}
