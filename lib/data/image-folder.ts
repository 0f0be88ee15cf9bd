import fs from 'node:fs';
import path from 'node:path';

import type { PaceErrorClass } from '../error-context';
import { type PaceError, PaceInputError, PaceNotFoundError } from '../errors';
import { isInside } from './dataset-root';
import { fsError } from './fs-context';
import type { SplitEntry } from './splits';

/** torchvision's `IMG_EXTENSIONS`: an ImageFolder's images, case aside; other files are not samples. */
const imageExtensions = new Set(['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp']);
/** Of those, the formats libvips (sharp) does not decode: a folder holding them is refused, not loaded short. */
const undecodable = new Set(['.ppm', '.bmp', '.pgm']);
/**
 * A file name's extension as torchvision tests it (`name.lower().endswith(...)`): from its last dot, also when
 * that is its first character (`path.extname('.jpg')` is empty, yet torchvision takes such a file for a sample).
 */
const extensionOf = (name: string) => {
  const base = path.basename(name);
  const dot = base.lastIndexOf('.');
  return dot < 0 ? '' : base.slice(dot).toLowerCase();
};

/**
 * A plain image folder, read as torchvision's ImageFolder reads one: each subfolder of the root is a class (classes
 * sorted by name; symbolic links to folders count), its images found at any depth (folders in path order, files by
 * name). A class without images is an error (it would shift every later label), and so are symbolic links that
 * lead outside the root and link loops, named by their folder. With `classNames` (a training folder's classes),
 * a held-out folder is labelled by them: a folder missing a class keeps the others' labels, and a class folder not
 * among them is an error.
 */
export function imageFolderEntries(
  root: string,
  classNames?: readonly string[],
): { entries: SplitEntry[]; classes: string[] } {
  const folder = new ImageFolder(root);
  const classes = folder.classes();
  if (classes.length === 0) throw new PaceInputError(`image folder '${root}' has no class subfolders`);
  const labels = new Map<string, number>();
  classNames?.forEach((name, label) => void (labels.has(name) || labels.set(name, label))); // a repeated name: its first
  const labelOf = (item: Item, own: number) => {
    if (!classNames) return own;
    const label = labels.get(item.name) ?? -1;
    if (label < 0) {
      const known = classNames.length > 8 ? `${classNames.slice(0, 8).join(', ')}, …` : classNames.join(', ');
      throw new PaceInputError(
        `image folder '${root}': class folder '${item.name}' is not one of the training folder's ` +
          `${classNames.length} classes (${known})`,
      );
    }
    return label;
  };
  const entries: SplitEntry[] = [];
  classes.forEach((item, own) => {
    const label = labelOf(item, own);
    const files = folder.imagesUnder(item);
    if (files.length === 0) {
      throw new PaceInputError(
        `image folder '${root}': class folder '${item.name}' has no images (${[...imageExtensions].join(', ')})`,
      );
    }
    const refused = files.find((file) => undecodable.has(extensionOf(file)));
    if (refused) {
      throw new PaceInputError(
        `image folder '${root}': '${path.relative(folder.realRoot, refused)}' is a ` +
          `${extensionOf(refused).slice(1).toUpperCase()} image, one of torchvision's ImageFolder samples that ` +
          `this package cannot decode (BMP, PPM, PGM): convert the folder's images to PNG first`,
      );
    }
    for (const file of files) entries.push({ path: file, label, line: entries.length + 1, fromFolder: true });
  });
  return { entries, classes: classNames ? [...classNames] : classes.map((item) => item.name) };
}

/** The class names of an image folder (its subfolders, sorted), the labels 0, 1, … in that order. */
export function imageFolderClasses(root: string): string[] {
  const classes = new ImageFolder(root).classes().map((item) => item.name);
  if (classes.length === 0) throw new PaceInputError(`image folder '${root}' has no class subfolders`);
  return classes;
}

/** A folder or file of the image folder: its name, its path relative to the root (for messages), its real path. */
interface Item {
  name: string;
  shown: string;
  real: string;
  isFolder: boolean;
}

const isImage = (item: Item) => !item.isFolder && imageExtensions.has(extensionOf(item.name));
/**
 * Python's order of names, by code point (torchvision sorts classes and files with `sorted`): JavaScript's `<`
 * compares UTF-16 units, which puts a name with an emoji before one with a full-width letter.
 */
function compare(a: string, b: string): number {
  for (let i = 0; i < a.length && i < b.length;) {
    const [p, q] = [a.codePointAt(i)!, b.codePointAt(i)!];
    if (p !== q) return p - q;
    i += p > 0xffff ? 2 : 1; // equal so far: both strings are at the same index
  }
  return a.length - b.length;
}

class ImageFolder {
  readonly realRoot: string;

  constructor(private readonly root: string) {
    try {
      this.realRoot = fs.realpathSync.native(root);
    } catch (error) {
      throw fsError(error, `image folder '${root}'`);
    }
  }

  /** The class folders, by name. */
  classes(): Item[] {
    const top: Item = { name: '', shown: '', real: this.realRoot, isFolder: true };
    return this.itemsOf(top).filter((item) => item.isFolder);
  }

  /** The real paths of the images under a class folder: folders in path order, each folder's files by name. */
  imagesUnder(classFolder: Item): string[] {
    const folders: { shown: string; files: string[] }[] = [];
    const reached = new Map<string, string>(); // each folder's real path, and where it was first reached
    const visit = (folder: Item, ancestors: ReadonlySet<string>) => {
      if (ancestors.has(folder.real)) throw this.problem(folder, 'is a symbolic link loop', PaceInputError);
      // Reached again through another link: its images would be listed twice (and links two to a level, 2^depth
      // times, as os.walk lists them).
      const first = reached.get(folder.real);
      if (first !== undefined) {
        throw this.problem(
          folder,
          `is the folder '${first}' again (through a symbolic link): its images would be listed twice; remove the link`,
          PaceInputError,
        );
      }
      reached.set(folder.real, folder.shown);
      const items = this.itemsOf(folder);
      folders.push({ shown: folder.shown, files: items.filter(isImage).map((item) => item.real) });
      const inside = new Set(ancestors).add(folder.real);
      for (const item of items) if (item.isFolder) visit(item, inside);
    };
    visit(classFolder, new Set([this.realRoot]));
    return folders.sort((a, b) => compare(a.shown, b.shown)).flatMap((folder) => folder.files);
  }

  /**
   * The folders and images in a folder, by name, symbolic links followed: one that leads outside the root is
   * refused, a broken one is an error if its name is an image's (torchvision would fail on it later) and is
   * otherwise ignored, like other files.
   */
  private itemsOf(folder: Item): Item[] {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(folder.real, { withFileTypes: true });
    } catch (error) {
      throw fsError(error, this.where(folder));
    }
    const items: Item[] = [];
    for (const entry of entries.sort((a, b) => compare(a.name, b.name))) {
      const shown = folder.shown === '' ? entry.name : `${folder.shown}/${entry.name}`;
      const item = { name: entry.name, shown, real: path.join(folder.real, entry.name), isFolder: entry.isDirectory() };
      // Node decodes names as UTF-8, a byte that is not becoming U+FFFD: such an image or folder would be listed
      // under a name that does not exist. (Files beside the class folders are no samples.)
      const sample = folder.shown !== '' && isImage(item);
      if (entry.name.includes('\uFFFD') && (item.isFolder || entry.isSymbolicLink() || sample)) {
        this.refuseUndecodableName(folder, entry.name);
      }
      const followed = entry.isSymbolicLink() ? this.follow(item, folder.shown !== '') : item;
      if (followed && (followed.isFolder || isImage(followed))) items.push(followed);
    }
    return items;
  }

  private refuseUndecodableName(folder: Item, decoded: string): void {
    const raw = fs
      .readdirSync(folder.real, { encoding: 'buffer' })
      .find((name) => name.toString('utf8') === decoded && !Buffer.from(decoded, 'utf8').equals(name));
    if (!raw) return; // the name holds U+FFFD itself
    const shown = [...raw]
      .map((byte) =>
        byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`,
      )
      .join('');
    throw this.problem(folder, `holds a name that is not UTF-8 ('${shown}'): rename it`, PaceInputError);
  }

  /** `inClass`: the link is inside a class folder, where an image's name makes it a sample. */
  private follow(link: Item, inClass: boolean): Item | undefined {
    let real: string;
    try {
      real = fs.realpathSync.native(link.real);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw fsError(error, this.where(link));
      if (inClass && isImage(link)) throw this.problem(link, 'is a symbolic link to nothing', PaceNotFoundError);
      return undefined;
    }
    const item = { ...link, real, isFolder: fs.statSync(real).isDirectory() };
    if (!inClass && !item.isFolder) return undefined; // beside the class folders, as torchvision's find_classes
    if ((item.isFolder || isImage(item)) && !isInside(this.realRoot, real)) {
      throw this.problem(link, `links outside the folder (${real})`, PaceInputError);
    }
    return item;
  }

  private where(item: Item): string {
    return item.shown === '' ? `image folder '${this.root}'` : `image folder '${this.root}': '${item.shown}'`;
  }

  private problem(item: Item, what: string, ErrorClass: PaceErrorClass): PaceError {
    return new ErrorClass(`${this.where(item)} ${what}`);
  }
}
