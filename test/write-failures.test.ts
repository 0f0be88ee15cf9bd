import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { createModel, PaceNotFoundError, saveTensors, tensor, Trainer, type Model } from '../lib';
import { writeFileAtomic } from '../lib/files';
import { makeTempDir } from './support/paths';
import { colourDataset, tinyVit } from './support/synthetic';
import { testIf } from './support/test-if';

// A file that cannot be written is a PaceWriteError (or, its folder missing, a PaceNotFoundError) naming the file
// and the system's reason: not a PaceFileError, which says a file is damaged (a caller resuming from `previous`
// on one would act on a full disk as on a corrupt checkpoint).
const temp = makeTempDir('write-failures');
afterAll(() => temp.cleanup());

/** A small tmpfs at `dir` (root on Linux), or the reason there is none. */
function mountTmpfs(dir: string, kilobytes: number): string | undefined {
  fs.mkdirSync(dir, { recursive: true });
  const run = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${kilobytes}k`, 'tmpfs', dir], { encoding: 'utf8' });
  return run.status === 0 ? undefined : `cannot mount a tmpfs here (${(run.stderr || String(run.error)).trim()})`;
}
const unmount = (dir: string) => spawnSync('umount', ['-l', dir]);
const probe = path.join(temp.dir, 'probe');
const noMount = mountTmpfs(probe, 64);
if (noMount === undefined) unmount(probe);

/** An adapted tiny model, for saves that are to fail. */
async function adaptedModel() {
  const model = await createModel(tinyVit, { seed: 1 });
  model.addAdapters({ rank: 2 });
  return model;
}

/** The error of an adapter save into `dir`: its class, and its message but for the temporary name's numbers. */
async function adapterSaveFailure(model: Model, dir: string): Promise<[string, string]> {
  const error = (await model.saveAdapters(path.join(dir, 'adapters.safetensors')).catch((e: unknown) => e)) as Error;
  return [error.name, error.message.replace(/\.tmp-\d+-\d+'/, ".tmp-N-N'")];
}

test('a folder that does not exist is named as not found, by the native writer and the TypeScript one', async () => {
  const missing = path.join(temp.dir, 'no-such-folder');
  using model = await adaptedModel();
  expect(await adapterSaveFailure(model, missing)).toEqual([
    'PaceNotFoundError',
    `cannot create '${missing}/adapters.safetensors.tmp-N-N': No such file or directory (its folder does not exist)`,
  ]);
  using values = tensor([1, 2, 3]);
  await expect(saveTensors(path.join(missing, 'x.safetensors'), { values })).rejects.toBeInstanceOf(PaceNotFoundError);
  expect(fs.existsSync(missing)).toBe(false);
});

describe('on a full and on a read-only file system', () => {
  const disk = path.join(temp.dir, 'disk');
  beforeAll(() => {
    if (noMount === undefined) mountTmpfs(disk, 320);
  });
  afterAll(() => {
    if (noMount === undefined) unmount(disk);
  });

  testIf(noMount === undefined, noMount ?? '')(
    'a full disk fails the fit with a PaceWriteError naming the checkpoint; no temporary file stays',
    async () => {
      using model = await createModel({ ...tinyVit, embedDim: 64 }, { seed: 1 });
      model.addAdapters({ rank: 4 });
      const runDir = path.join(disk, 'run');
      const fit = new Trainer(model, { optimizer: { lr: 1e-3 } }).fit(colourDataset(32, 1), {
        epochs: 2,
        batchSize: 16,
        runDir,
        progress: false,
      });
      await expect(fit).rejects.toThrow(
        expect.objectContaining({
          name: 'PaceWriteError',
          code: 'PACE_WRITE_FAILED',
          message: expect.stringMatching(
            /^cannot write '.*\/run\/last\.safetensors\.tmp-\d+-\d+': No space left on device$/,
          ),
        }),
      );
      expect(fs.readdirSync(runDir).filter((name) => name.includes('.tmp-'))).toEqual([]);
    },
  );

  testIf(noMount === undefined, noMount ?? '')(
    'read-only: adapters, a run folder and its files are PaceWriteErrors naming the file',
    async () => {
      const runDir = path.join(disk, 'kept');
      fs.mkdirSync(runDir);
      fs.rmSync(path.join(disk, 'run'), { recursive: true, force: true });
      expect(spawnSync('mount', ['-o', 'remount,ro', disk]).status).toBe(0);
      try {
        using model = await adaptedModel();
        expect(await adapterSaveFailure(model, disk)).toEqual([
          'PaceWriteError',
          `cannot create '${disk}/adapters.safetensors.tmp-N-N': Read-only file system`,
        ]);
        const trainer = new Trainer(model, { optimizer: { lr: 1e-3 } });
        const data = colourDataset(16, 1);
        const fitInto = (dir: string) => trainer.fit(data, { epochs: 1, batchSize: 8, runDir: dir, progress: false });
        await expect(fitInto(path.join(disk, 'new-run'))).rejects.toThrow(
          expect.objectContaining({
            name: 'PaceWriteError',
            message: `cannot write '${path.join(disk, 'new-run')}': the file system is read-only (EROFS)`,
          }),
        );
        await expect(fitInto(runDir)).rejects.toThrow(
          expect.objectContaining({
            name: 'PaceWriteError',
            message: expect.stringMatching(
              /^cannot write '.*\/kept\/fit\.lock.*': the file system is read-only \(EROFS\)$/,
            ),
          }),
        );
      } finally {
        spawnSync('mount', ['-o', 'remount,rw', disk]);
      }
    },
  );
});

test('an atomic write never writes through a file or link already at a temporary name', () => {
  // Bug (a review): the temporary `<file>.tmp-<pid>` was opened with 'w', which follows a symbolic link planted in
  // a shared folder (or truncates a killed process's leftover of the same pid) and writes where it points.
  const dir = path.join(temp.dir, 'planted');
  fs.mkdirSync(dir);
  const victim = path.join(temp.dir, 'victim.txt');
  fs.writeFileSync(victim, 'untouched');
  const file = path.join(dir, 'summary.json');
  // The names the next writes will try (numbered per process), learnt from one write: links planted at each.
  const opened = jest.spyOn(fs, 'openSync');
  const temporaryNames = () => opened.mock.calls.map(([name]) => String(name)).filter((name) => name.includes('.tmp-'));
  let probe: string[];
  let tried: string[];
  let names: string[];
  try {
    writeFileAtomic(path.join(dir, 'probe.json'), '{}');
    probe = temporaryNames();
    fs.rmSync(path.join(dir, 'probe.json'));
    const next = Number(/\.tmp-\d+-(\d+)$/.exec(probe[0] ?? '')?.[1]) + 1;
    names = Array.from({ length: 21 }, (_, n) => `${file}.tmp-${process.pid}-${next + n}`);
    for (const name of names.slice(0, 20)) fs.symlinkSync(victim, name);
    opened.mockClear();
    writeFileAtomic(file, '{"ok":true}');
  } finally {
    tried = temporaryNames();
    opened.mockRestore();
  }
  expect(probe).toEqual([expect.stringMatching(new RegExp(`probe\\.json\\.tmp-${process.pid}-\\d+$`))]);
  expect(tried).toEqual(names); // the twenty links met (EEXIST), then the next name taken
  expect(fs.readFileSync(file, 'utf8')).toBe('{"ok":true}');
  expect(fs.readFileSync(victim, 'utf8')).toBe('untouched');
  const links = new Set(names.slice(0, 20));
  expect(fs.readdirSync(dir).filter((name) => !links.has(path.join(dir, name)))).toEqual(['summary.json']);
});
