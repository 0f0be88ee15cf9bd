import fs from 'node:fs';
import path from 'node:path';

import { createModel, disposeTensors, loadTensors, readTensorHeader, saveTensors, Trainer, type Model } from '../lib';
import { checkpointDigest, saveCheckpointWithDigest } from './support/checkpoint-digest';
import { makeTempDir } from './support/paths';
import { colourDataset, seededRandom, tinyVit } from './support/synthetic';

// A training checkpoint must prove its integrity before anything is restored: flipped bytes or edited fields are
// refused naming the file and the problem, and the trainer is left as it was.
const temp = makeTempDir('checkpoints');
afterAll(() => temp.cleanup());

const trainerOptions = { optimizer: { lr: 1e-2 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 3 };
const train = colourDataset(64, 1);
const fit = { epochs: 4, batchSize: 16, schedule: { warmupEpochs: 1 }, progress: false as const };
const init = path.join(temp.dir, 'init.safetensors');
const base = path.join(temp.dir, 'base.safetensors');
const runDir = path.join(temp.dir, 'run');
let expected: Buffer;

async function freshModel(): Promise<Model> {
  const model = await createModel(tinyVit, { pretrained: base });
  model.addAdapters({ rank: 4 });
  await model.loadAdapters(init);
  return model;
}

async function adapterBytes(model: Model): Promise<Buffer> {
  const file = path.join(temp.dir, `adapters-${Math.random()}.safetensors`);
  await model.saveAdapters(file);
  return fs.readFileSync(file);
}

/** A copy of the two-epoch run folder to damage. */
function copyOfRun(name: string): string {
  const dir = path.join(temp.dir, name);
  fs.cpSync(runDir, dir, { recursive: true });
  return dir;
}

/** Resumes `dir` in a fresh model; returns the error and whether the adapters stayed as they were. */
async function resumeError(
  dir: string,
  extra: Record<string, unknown> = {},
): Promise<{ message: string; untouched: boolean }> {
  using model = await freshModel();
  const before = await adapterBytes(model);
  const error = await new Trainer(model, trainerOptions)
    .fit(train, { ...fit, resume: dir, ...extra })
    .then(() => new Error('the resume was accepted'))
    .catch((e: Error) => e);
  return { message: error.message, untouched: (await adapterBytes(model)).equals(before) };
}

beforeAll(async () => {
  using backbone = await createModel(tinyVit, { seed: 11 });
  await backbone.saveWeights(base);
  backbone.addAdapters({ rank: 4 });
  await backbone.saveAdapters(init);
  using whole = await freshModel();
  await new Trainer(whole, trainerOptions).fit(train, fit);
  expected = await adapterBytes(whole);
  using half = await freshModel();
  await new Trainer(half, trainerOptions).fit(train, { ...fit, epochs: 4, runDir, callbacks: [stopAfter(2)] });
});

/** A callback that stops the fit after `epochs` epochs (the run folder then holds epochs 0..epochs-1). */
function stopAfter(epochs: number) {
  return {
    onEpochEnd: (epoch: number, _logs: unknown, control: { stop(): void }) =>
      void (epoch + 1 === epochs && control.stop()),
  };
}

test('the digest the native writer records is the one computed independently from the file', async () => {
  const { tensors, metadata } = await loadTensors(path.join(runDir, 'last.safetensors'));
  expect(metadata?.['pace.digest']).toMatch(/^crc32:[0-9a-f]{8}$/);
  expect(checkpointDigest(tensors, metadata ?? {})).toBe(metadata?.['pace.digest']);
  disposeTensors(tensors);
});

test('an intact run folder resumes and ends exactly as an uninterrupted run', async () => {
  using model = await freshModel();
  const history = await new Trainer(model, trainerOptions).fit(train, { ...fit, resume: copyOfRun('intact') });
  expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
  expect((await adapterBytes(model)).equals(expected)).toBe(true);
});

test('a flipped byte anywhere in the tensor data is refused, naming the file, before anything is restored', async () => {
  const header = await readTensorHeader(path.join(runDir, 'last.safetensors'));
  const random = seededRandom(29);
  const names = header.entries.filter((e) => e.dataOffsets[1] > e.dataOffsets[0]);
  for (let trial = 0; trial < 8; trial++) {
    const entry = names[Math.floor(random() * names.length)];
    const [begin, end] = entry.dataOffsets;
    const position = header.dataStart + begin + Math.floor(random() * (end - begin));
    const dir = copyOfRun(`flip-${trial}`);
    const file = path.join(dir, 'last.safetensors');
    const bytes = fs.readFileSync(file);
    bytes[position] ^= 1 << Math.floor(random() * 8);
    fs.writeFileSync(file, bytes);
    const { message, untouched } = await resumeError(dir);
    expect([entry.name, message]).toEqual([
      entry.name,
      expect.stringContaining(`cannot resume from ${file}: it is corrupt or was edited`),
    ]);
    expect(untouched).toBe(true);
  }
});

test('edited metadata is refused: by the digest, and by its rules when the digest was recomputed', async () => {
  const dir = copyOfRun('edited');
  const file = path.join(dir, 'last.safetensors');
  const { tensors, metadata } = await loadTensors(file);
  const original = { ...(metadata ?? {}) };
  expect(original.epoch).toBe('1');
  // Edited in place, digest left as it was: a logged loss changed, every rule still holds.
  const history = JSON.parse(original.history) as { loss: number }[];
  history[0].loss += 1;
  await saveTensors(file, tensors, { metadata: { ...original, history: JSON.stringify(history) } });
  expect((await resumeError(dir)).message).toContain('it is corrupt or was edited');
  // Edited with a digest recomputed to match: the fields must still make sense for this run.
  const cases: [Record<string, string>, string][] = [
    [{ epoch: '7' }, "its metadata field 'epoch' is past the last epoch of this run (3)"],
    [{ epoch: '-4' }, "its metadata field 'epoch'"],
    [{ epoch: 'one' }, "its metadata field 'epoch' must be an integer"],
    [{ epoch: '0' }, "its metadata field 'history' must list epochs 0 to 0 in order"],
    [{ history: '{' }, "its metadata field 'history' is not JSON"],
  ];
  for (const [edit, expectedMessage] of cases) {
    await saveCheckpointWithDigest(file, tensors, { ...original, ...edit });
    const { message, untouched } = await resumeError(dir);
    expect([edit, message]).toEqual([edit, expect.stringContaining(expectedMessage)]);
    expect(untouched).toBe(true);
  }
  disposeTensors(tensors);
});

test('a refused last checkpoint names the previous one, which resumes to the same end', async () => {
  const dir = copyOfRun('use-previous');
  const file = path.join(dir, 'last.safetensors');
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(file, bytes);
  expect((await resumeError(dir)).message).toContain(
    "Its other checkpoints can be resumed with resumeFrom: 'previous' (epoch 0)",
  );
  using model = await freshModel();
  const history = await new Trainer(model, trainerOptions).fit(train, { ...fit, resume: dir, resumeFrom: 'previous' });
  expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
  expect((await adapterBytes(model)).equals(expected)).toBe(true);
});

test('temporary files of a killed writer are removed; a run killed before its first checkpoint starts over', async () => {
  let deadPid = 4_000_000;
  while (fs.existsSync(`/proc/${deadPid}`)) deadPid += 1;
  const dir = path.join(temp.dir, 'killed-early');
  fs.mkdirSync(dir);
  const orphans = [`last.safetensors.tmp-${deadPid}-0`, `metrics.jsonl.tmp-${deadPid}`];
  for (const name of orphans) fs.writeFileSync(path.join(dir, name), 'half of a file');
  using model = await freshModel();
  const history = await new Trainer(model, trainerOptions).fit(train, { ...fit, resume: dir });
  expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
  expect((await adapterBytes(model)).equals(expected)).toBe(true);
  expect(fs.readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
});

test('resuming from a folder that does not exist is an error, and creates nothing', async () => {
  const dir = path.join(temp.dir, 'no-such-run');
  expect((await resumeError(dir)).message).toBe(`resume: the run folder ${dir} does not exist`);
  expect(fs.existsSync(dir)).toBe(false);
});
