// Writing files so that readers and crashes never see half of one.
import fs from 'node:fs';
import path from 'node:path';

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

/**
 * Writes a file through a temporary name, fsync, rename and a sync of its folder, so readers never see half of
 * it and a crash leaves the old file or the new one. A failed write leaves no temporary file behind.
 */
export function writeFileAtomic(file: string, text: string): void {
  const temp = `${file}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(temp, 'w');
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (error) {
    fs.rmSync(temp, { force: true });
    throw error;
  }
  syncDirectory(path.dirname(file));
}
