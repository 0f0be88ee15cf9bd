import fs from 'node:fs';
import path from 'node:path';

/** Whether `target` is `root` or lies under it (both absolute). A name such as `..foo.jpg` is inside. */
export function isInside(root: string, target: string): boolean {
  const relative = path.relative(root, target);
  return relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/** What is known of one folder of a dataset: its real path (absent if it does not exist) and its symbolic links. */
interface FolderInfo {
  real?: string;
  links: Set<string>;
}

/**
 * A dataset root, to check where the files of a split list really lead (symbolic links followed) without a system
 * call per file: each folder is resolved and listed once, and only files that are links themselves are resolved.
 */
export class DatasetRoot {
  private readonly root: string;
  private readonly real?: string;
  private readonly folders = new Map<string, FolderInfo>();

  constructor(root: string) {
    this.root = path.resolve(root);
    this.real = realOrUndefined(root);
  }

  /**
   * The real path of `file` (inside the root by name) when it leads outside the root's real path; undefined when
   * it stays inside or does not exist (a missing file is reported when it is read).
   */
  escapeOf(file: string): string | undefined {
    if (this.real === undefined || path.resolve(file) === this.root) return undefined;
    const folder = this.folder(path.dirname(file));
    if (folder.real === undefined) return undefined;
    const name = path.basename(file);
    if (!isInside(this.real, folder.real)) return realOrUndefined(file) ?? path.join(folder.real, name);
    if (!folder.links.has(name)) return undefined;
    const target = realOrUndefined(file);
    return target !== undefined && !isInside(this.real, target) ? target : undefined;
  }

  private folder(dir: string): FolderInfo {
    let info = this.folders.get(dir);
    if (!info) {
      info = { real: realOrUndefined(dir), links: symbolicLinksIn(dir) };
      this.folders.set(dir, info);
    }
    return info;
  }
}

function realOrUndefined(file: string): string | undefined {
  try {
    return fs.realpathSync.native(file);
  } catch {
    return undefined; // missing, a broken link or a loop: the read reports it
  }
}

function symbolicLinksIn(dir: string): Set<string> {
  try {
    return new Set(
      fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((entry) => entry.isSymbolicLink())
        .map((entry) => entry.name),
    );
  } catch {
    return new Set();
  }
}
