import fs from 'node:fs';
import path from 'node:path';

import { imageFolderEntries } from '../lib';
import { makeTempDir } from './support/paths';

// imageFolderEntries reads a folder as torchvision's ImageFolder does: symbolic links followed, images at any
// depth, and a class without images refused (it would shift every later label).

const temp = makeTempDir('image-folder');
afterAll(() => temp.cleanup());

/** A fresh folder with the given files (contents do not matter: nothing is decoded). */
function folderWith(files: string[]): string {
  const root = fs.mkdtempSync(path.join(temp.dir, 'root-'));
  for (const file of files) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), 'x');
  }
  return root;
}

const listing = (root: string) => {
  const { entries, classes } = imageFolderEntries(root);
  const real = fs.realpathSync(root);
  return { classes, entries: entries.map((e) => [path.relative(real, e.path), e.label, e.line]) };
};

test('a class folder that is a link inside the root counts, and images in nested folders are found', () => {
  const root = folderWith(['a/1.png', 'c/2.png', 'store/b-images/3.png', 'store/b-images/deeper/4.jpg', 'b0/x.png']);
  fs.symlinkSync(path.join(root, 'store', 'b-images'), path.join(root, 'b'));
  expect(listing(root)).toEqual({
    classes: ['a', 'b', 'b0', 'c', 'store'],
    entries: [
      [path.join('a', '1.png'), 0, 1],
      [path.join('store', 'b-images', '3.png'), 1, 2],
      [path.join('store', 'b-images', 'deeper', '4.jpg'), 1, 3],
      [path.join('b0', 'x.png'), 2, 4],
      [path.join('c', '2.png'), 3, 5],
      [path.join('store', 'b-images', '3.png'), 4, 6],
      [path.join('store', 'b-images', 'deeper', '4.jpg'), 4, 7],
    ],
  });
});

test("a class's folders are visited in path order, each one's files by name (torchvision's order)", () => {
  // torchvision sorts os.walk's folders by path: k/a b (a space) comes before k/a/sub, not after as a walk would.
  const root = folderWith(['k/z.png', 'k/a b/2.png', 'k/a/1.png', 'k/a/0.png', 'k/b.png', 'k/a/sub/3.png']);
  expect(listing(root).entries.map(([file]) => file)).toEqual([
    path.join('k', 'b.png'),
    path.join('k', 'z.png'),
    path.join('k', 'a', '0.png'),
    path.join('k', 'a', '1.png'),
    path.join('k', 'a b', '2.png'),
    path.join('k', 'a', 'sub', '3.png'),
  ]);
});

test("names are ordered by code point, as Python's sorted orders them (not by UTF-16 unit)", () => {
  // Bug: an emoji (two UTF-16 units from 0xD83D) sorted before a full-width letter (U+FF01): the classes' labels were
  // swapped against torchvision's.
  const root = folderWith(['😀/b.png', '！/a.png', '！/😀.png', '！/！.png', 'z/1.png']);
  const { entries, classes } = listing(root);
  expect(classes).toEqual(['z', '！', '😀']);
  expect(entries.map(([file, label]) => [file, label])).toEqual([
    [path.join('z', '1.png'), 0],
    [path.join('！', 'a.png'), 1],
    [path.join('！', '！.png'), 1],
    [path.join('！', '😀.png'), 1],
    [path.join('😀', 'b.png'), 2],
  ]);
});

test('a class folder without images is refused, naming it', () => {
  const root = folderWith(['a/1.png', 'b/notes.txt', 'c/2.png']);
  expect(() => imageFolderEntries(root)).toThrow(
    expect.objectContaining({
      name: 'PaceInputError',
      message: expect.stringContaining(`image folder '${root}': class folder 'b' has no images (.jpg, .jpeg`),
    }),
  );
});

test('links leading outside the root are refused: a class folder, a nested folder, an image', () => {
  const outside = folderWith(['elsewhere/9.png']);
  const target = path.join(fs.realpathSync(outside), 'elsewhere');
  const cases: [string, (root: string) => void][] = [
    ['b', (root) => fs.symlinkSync(target, path.join(root, 'b'))],
    ['a/sub', (root) => fs.symlinkSync(target, path.join(root, 'a', 'sub'))],
    ['a/x.png', (root) => fs.symlinkSync(path.join(target, '9.png'), path.join(root, 'a', 'x.png'))],
  ];
  for (const [shown, link] of cases) {
    const root = folderWith(['a/1.png']);
    link(root);
    expect(() => imageFolderEntries(root)).toThrow(
      expect.objectContaining({
        name: 'PaceInputError',
        message: `image folder '${root}': '${shown}' links outside the folder (${shown === 'a/x.png' ? path.join(target, '9.png') : target})`,
      }),
    );
  }
});

test('a link loop and a broken image link are named; other broken links and files are left out', () => {
  const loop = folderWith(['a/1.png']);
  fs.symlinkSync(path.join(loop, 'a'), path.join(loop, 'a', 'again'));
  expect(() => imageFolderEntries(loop)).toThrow(`image folder '${loop}': 'a/again' is a symbolic link loop`);
  const broken = folderWith(['a/1.png']);
  fs.symlinkSync('/nonexistent/gone.png', path.join(broken, 'a', 'gone.png'));
  expect(() => imageFolderEntries(broken)).toThrow(
    expect.objectContaining({
      name: 'PaceNotFoundError',
      message: `image folder '${broken}': 'a/gone.png' is a symbolic link to nothing`,
    }),
  );
  const ignored = folderWith(['a/1.png', 'a/readme.txt']);
  fs.symlinkSync('/nonexistent/notes.txt', path.join(ignored, 'a', 'notes.txt'));
  expect(listing(ignored).entries).toEqual([[path.join('a', '1.png'), 0, 1]]);
});

test('links beside the class folders to files are no samples, as torchvision keeps only folders there', () => {
  // Bug (review): a cover image linked from elsewhere, or a broken link named like an image, beside the class
  // folders failed the whole folder ("links outside the folder", "a symbolic link to nothing").
  const outside = folderWith(['elsewhere/9.png']);
  const root = folderWith(['a/1.png']);
  fs.symlinkSync(path.join(outside, 'elsewhere', '9.png'), path.join(root, 'cover.png'));
  fs.symlinkSync('/nonexistent/preview.jpg', path.join(root, 'preview.jpg'));
  expect(listing(root).entries).toEqual([[path.join('a', '1.png'), 0, 1]]);
});

test('a folder reached twice through links is refused at once, naming both ways (links two to a level took 2^depth)', () => {
  // Bug: only loops were caught: two links to the next level at each of 16 levels listed one image 131,072 times,
  // after 12 s of walking.
  const diamonds = folderWith(['a/d16/1.png']);
  for (let level = 0; level < 16; level++) {
    fs.mkdirSync(path.join(diamonds, 'a', `d${level}`), { recursive: true });
    for (const name of ['x', 'y']) fs.symlinkSync(`../d${level + 1}`, path.join(diamonds, 'a', `d${level}`, name));
  }
  const started = Date.now();
  // Depth first: the first folder reached again is the deepest, through y where x led before.
  const x15 = `a/d0${'/x'.repeat(15)}`;
  expect(() => imageFolderEntries(diamonds)).toThrow(
    expect.objectContaining({
      name: 'PaceInputError',
      message: `image folder '${diamonds}': '${x15}/y' is the folder '${x15}/x' again (through a symbolic link): its images would be listed twice; remove the link`,
    }),
  );
  expect(Date.now() - started).toBeLessThan(1000);
});

test('a root that is missing or a file is a PaceNotFoundError or PaceFileError naming it', () => {
  const missing = path.join(temp.dir, 'nope');
  expect(() => imageFolderEntries(missing)).toThrow(
    expect.objectContaining({ name: 'PaceNotFoundError', message: `image folder '${missing}' does not exist` }),
  );
  const file = path.join(temp.dir, 'a-file');
  fs.writeFileSync(file, 'x');
  expect(() => imageFolderEntries(file)).toThrow(
    expect.objectContaining({ name: 'PaceFileError', message: `image folder '${file}' is not a folder` }),
  );
});

test("the samples are torchvision's IMG_EXTENSIONS, any case: a GIF or an AVIF is not one, a .JPEG is", () => {
  // Bug: GIF and AVIF files were samples (torchvision leaves them out), so counts and labels differed from its.
  // A name that is all extension counts too, as torchvision's endswith test counts it; one without a dot does not.
  const root = folderWith(['a/1.JPEG', 'a/2.gif', 'a/3.avif', 'a/4.TIF', 'a/5.webp', 'a/.jpg', 'a/png', 'b/6.Png']);
  expect(listing(root).entries).toEqual([
    [path.join('a', '.jpg'), 0, 1],
    [path.join('a', '1.JPEG'), 0, 2],
    [path.join('a', '4.TIF'), 0, 3],
    [path.join('a', '5.webp'), 0, 4],
    [path.join('b', '6.Png'), 1, 5],
  ]);
});

test('a BMP, PPM or PGM sample (torchvision reads them, libvips does not) is refused, naming it', () => {
  // Bug: they were left out without a word, a class of them refused as having no images.
  for (const name of ['b/x.bmp', 'b/y.PPM', 'b/deep/z.pgm']) {
    const root = folderWith(['a/1.png', 'b/2.png', name]);
    const kind = path.extname(name).slice(1).toUpperCase();
    expect(() => imageFolderEntries(root)).toThrow(
      expect.objectContaining({
        name: 'PaceInputError',
        message:
          `image folder '${root}': '${name}' is a ${kind} image, one of torchvision's ImageFolder samples that this ` +
          "package cannot decode (BMP, PPM, PGM): convert the folder's images to PNG first",
      }),
    );
  }
});

test('an image or folder whose name is not UTF-8 is refused, naming its bytes; another such file is left out', () => {
  // Bug: Node read 'caf\xe9.png' as 'caf\uFFFD.png', a file that does not exist, reported later as missing.
  const root = folderWith(['a/1.png', 'b/2.png']);
  const bytes = (name: string) => Buffer.concat([Buffer.from(path.join(root, 'b') + '/'), Buffer.from(name, 'latin1')]);
  fs.writeFileSync(bytes('notes-\xe9.txt'), 'x');
  expect(listing(root).entries).toHaveLength(2);
  fs.writeFileSync(bytes('caf\xe9.png'), 'x');
  expect(() => imageFolderEntries(root)).toThrow(
    expect.objectContaining({
      name: 'PaceInputError',
      message: `image folder '${root}': 'b' holds a name that is not UTF-8 ('caf\\xe9.png'): rename it`,
    }),
  );
  // Beside the class folders, such a file is no sample: left out, as torchvision leaves it.
  const top = folderWith(['a/1.png']);
  fs.writeFileSync(Buffer.concat([Buffer.from(`${top}/`), Buffer.from('caf\xe9.png', 'latin1')]), 'x');
  expect(listing(top).entries).toEqual([[path.join('a', '1.png'), 0, 1]]);
  // A name that holds U+FFFD itself is an ordinary name.
  const plain = folderWith(['a/\uFFFD.png']);
  expect(listing(plain).entries).toEqual([[path.join('a', '\uFFFD.png'), 0, 1]]);
});
