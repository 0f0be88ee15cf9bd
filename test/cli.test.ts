import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import sharp from 'sharp';

import {
  createModel,
  loadTensors,
  readTensorHeader,
  saveTensors,
  tensor,
  TensorDataset,
  Trainer,
  type History,
} from '../lib';
import { commitOf, startFakeHub } from './support/hub-server';
import { fixturesDir, makeTempDir, repoRoot } from './support/paths';
import { freePort } from './support/ports';
import { colourData, seededRandom, tinyVit } from './support/synthetic';
import { stopLine } from '../lib/cli/commands';
import { numberFlag } from '../lib/cli/usage';

const temp = makeTempDir('cli');
afterAll(() => temp.cleanup());

const pace = (args: string[]) =>
  spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), ...args], { cwd: temp.dir, encoding: 'utf8' });

async function writeDataset(file: string, count: number, seed: number): Promise<void> {
  const { images, labels } = colourData(count, seed);
  using imagesTensor = tensor(images, [count, 3, 16, 16]);
  using labelsTensor = tensor(labels);
  await saveTensors(path.join(temp.dir, file), { images: imagesTensor, labels: labelsTensor });
}

test('pace fit, eval and export run a config end to end', async () => {
  await writeDataset('train.safetensors', 256, 1);
  await writeDataset('val.safetensors', 64, 2);
  using backbone = await createModel(tinyVit, { seed: 7 });
  await backbone.saveWeights(path.join(temp.dir, 'backbone.safetensors'));
  const config = {
    model: { name: tinyVit, numClasses: 4, pretrained: 'backbone.safetensors' },
    adapters: { type: 'loramul_vptadd', rank: 4 },
    trainer: { optimizer: { lr: 0.01 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 1 },
    data: { train: 'train.safetensors', validation: 'val.safetensors' },
    fit: { epochs: 4, batchSize: 16, evalEvery: 2, schedule: { warmupEpochs: 1 } },
    runDir: 'run',
  };
  fs.writeFileSync(path.join(temp.dir, 'run.json'), JSON.stringify(config));

  const fit = pace(['fit', '--config', 'run.json', '--epochs', '6']);
  expect(fit.stderr).toBe('');
  expect(fit.status).toBe(0);
  expect(fit.stdout).toMatch(/^epoch 5: loss \d\.\d{4} acc \d\.\d{4} lr \S+ val_acc \d\.\d{4}$/m);
  expect(fit.stdout).toContain(
    `completed after 6 epochs; adapters in ${path.join(temp.dir, 'run', 'adapters.safetensors')}`,
  );
  for (const file of [
    'config.json',
    'metrics.jsonl',
    'summary.csv',
    'last.safetensors',
    'best.safetensors',
    'adapters.safetensors',
  ]) {
    expect(fs.existsSync(path.join(temp.dir, 'run', file))).toBe(true);
  }
  expect(
    fs
      .readFileSync(path.join(temp.dir, 'run', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n'),
  ).toHaveLength(6);

  const evaluation = pace(['eval', '--config', 'run.json', '--adapters', 'run/adapters.safetensors']);
  expect(evaluation.status).toBe(0);
  const report = JSON.parse(evaluation.stdout);
  expect(report.samples).toBe(64);
  expect(report.accuracy).toBeGreaterThan(0.5);
  expect(report.perClassAccuracy).toHaveLength(4);

  const exported = pace([
    'export',
    '--config',
    'run.json',
    '--adapters',
    'run/adapters.safetensors',
    '--merged',
    '--out',
    'merged.safetensors',
  ]);
  expect(exported.status).toBe(0);
  using plain = await createModel(tinyVit, { numClasses: 4, pretrained: path.join(temp.dir, 'merged.safetensors') });
  const { tensors } = await loadTensors(path.join(temp.dir, 'val.safetensors'));
  using logits = await plain.forward(tensors.images);
  const predicted = Array.from({ length: 64 }, (_, i) => {
    const row = Array.from(logits.toFloat32Array().subarray(i * 4, i * 4 + 4));
    return row.indexOf(Math.max(...row));
  });
  const labels = Array.from(tensors.labels.toBigInt64Array(), Number);
  const accuracy = predicted.filter((p, i) => p === labels[i]).length / 64;
  expect(accuracy).toBeCloseTo(report.accuracy, 10);
  for (const t of Object.values(tensors)) t.dispose();
});

test("pace fit writes its adapters under the run folder's lock, taken again after the fit let it go", async () => {
  // Bug: the adapters (and domain-shift.json) were written after the fit had released fit.lock, so a fit or resume
  // started meanwhile into the folder could interleave its files with them.
  await writeDataset('lock-train.safetensors', 32, 3);
  const config = {
    model: { name: tinyVit, numClasses: 4 },
    adapters: { type: 'loramul_vptadd', rank: 2 },
    trainer: { seed: 1 },
    data: { train: 'lock-train.safetensors' },
    fit: { epochs: 1, batchSize: 16 },
  };
  fs.writeFileSync(path.join(temp.dir, 'lock.json'), JSON.stringify(config));
  const dir = path.join(temp.dir, 'lock-run');
  fs.mkdirSync(dir);
  // inotify keeps the order of the folder's changes: each link and unlink of fit.lock is one 'rename' event.
  const events: string[] = [];
  const watcher = fs.watch(dir, (type, name) => {
    if (type === 'rename' && (name === 'fit.lock' || name === 'adapters.safetensors')) events.push(name);
  });
  try {
    const child = spawn(
      process.execPath,
      [path.join(repoRoot, 'dist', 'cli.js'), 'fit', '--config', 'lock.json', '--run-dir', 'lock-run'],
      {
        cwd: temp.dir,
        stdio: 'ignore',
      },
    );
    const [code] = await new Promise<[number | null]>((resolve) => child.on('exit', (c) => resolve([c])));
    expect(code).toBe(0);
    // The last events on their way: waited for (the five expected, or five seconds), not slept on.
    for (let waited = 0; events.length < 5 && waited < 250; waited++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((resolve) => setImmediate(resolve)); // any event beyond them, already read, comes in too
  } finally {
    watcher.close();
  }
  expect(events).toEqual(['fit.lock', 'fit.lock', 'fit.lock', 'adapters.safetensors', 'fit.lock']);
  expect(fs.existsSync(path.join(dir, 'fit.lock'))).toBe(false);
}, 60_000);

test('pace eval and export refuse adapters trained on other frozen weights unless --allow-other-weights', async () => {
  await writeDataset('weights-data.safetensors', 16, 4);
  for (const seed of [21, 22]) {
    using backbone = await createModel(tinyVit, { seed });
    await backbone.saveWeights(path.join(temp.dir, `backbone-${seed}.safetensors`));
  }
  // Adapters trained (here: initialised and saved) on backbone 21, evaluated on a config naming backbone 22.
  using trained = await createModel(tinyVit, {
    numClasses: 4,
    pretrained: path.join(temp.dir, 'backbone-21.safetensors'),
  });
  trained.addAdapters({ type: 'loramul_vptadd', rank: 2 });
  await trained.saveAdapters(path.join(temp.dir, 'weights-adapters.safetensors'));
  const config = {
    model: { name: tinyVit, numClasses: 4, pretrained: 'backbone-22.safetensors' },
    adapters: { type: 'loramul_vptadd', rank: 2 },
    data: { train: 'weights-data.safetensors', test: 'weights-data.safetensors' },
    fit: { epochs: 1, batchSize: 8 },
  };
  fs.writeFileSync(path.join(temp.dir, 'weights.json'), JSON.stringify(config));
  const common = ['--config', 'weights.json', '--adapters', 'weights-adapters.safetensors'];

  const refused = pace(['eval', ...common]);
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/was trained on other frozen weights: .*\(pace: --allow-other-weights\)/);
  const allowed = pace(['eval', ...common, '--allow-other-weights']);
  expect(allowed.stderr).toBe('');
  expect(allowed.status).toBe(0);
  expect(JSON.parse(allowed.stdout).samples).toBe(16);

  expect(pace(['export', ...common, '--merged', '--out', 'weights-merged.safetensors']).status).toBe(1);
  const exported = pace([
    'export',
    ...common,
    '--merged',
    '--out',
    'weights-merged.safetensors',
    '--allow-other-weights',
  ]);
  expect(exported.status).toBe(0);
  expect(fs.existsSync(path.join(temp.dir, 'weights-merged.safetensors'))).toBe(true);
});

test('bad configs and command lines get errors naming the field, with exit code 1 or 2', () => {
  fs.writeFileSync(
    path.join(temp.dir, 'bad.json'),
    JSON.stringify({ model: { name: 'vit_tiny_patch16_224' }, data: { train: 'x' }, fit: {} }),
  );
  const bad = pace(['fit', '--config', 'bad.json', '--run-dir', 'r']);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain(`config 'bad.json'.model.numClasses:`);
  const missing = pace(['fit']);
  expect(missing.status).toBe(2);
  expect(missing.stderr).toContain('--config is required');
  expect(missing.stderr).toContain('Usage: pace fit --config run.json');
  fs.writeFileSync(
    path.join(temp.dir, 'random.json'),
    JSON.stringify({ model: { name: tinyVit, numClasses: 4 }, data: { train: 'train.safetensors' }, fit: {} }),
  );
  const random = pace(['eval', '--config', 'random.json', '--adapters', 'run/adapters.safetensors']);
  expect(random.status).toBe(2);
  expect(random.stderr).toContain('model.pretrained is required');
  const unknownFlag = pace(['eval', '--bogus']);
  expect(unknownFlag.status).toBe(2);
  const help = pace(['export', '--help']);
  expect(help.status).toBe(0);
  expect(help.stdout).toContain('pace export --config run.json --adapters FILE --merged --out FILE');
  // Bug: the command list took each usage's second line, which for fit and eval was the rest of their flags.
  const commands = pace(['--help']);
  expect(commands.stdout).toMatch(/^ {2}fit {5}Fine-tunes the model of run\.json/m);
  expect(commands.stdout).toMatch(/^ {2}eval {4}Evaluates fine-tuned adapters/m);
  expect(commands.stdout).not.toMatch(/^ {2}\w+ +\[/m);
});

test("an error echoing a file's text shows its control characters escaped, not sent to the terminal", () => {
  // Bug (review): a config key, a tensor name or a list line chosen by a file's author reached the terminal raw
  // in the error, escape sequences included.
  const key = '\u001b[2J\u001b]0;owned\u0007';
  const config = { model: { name: 'vit_tiny_patch16_224', numClasses: 3 }, data: { train: 'x' }, fit: {}, [key]: 1 };
  fs.writeFileSync(path.join(temp.dir, 'escapes.json'), JSON.stringify(config));
  const run = pace(['fit', '--config', 'escapes.json', '--run-dir', 'r']);
  expect(run.status).toBe(1);
  expect(run.stderr).toContain('Unrecognized key: "\\x1b[2J\\x1b]0;owned\\x07"');
  // eslint-disable-next-line no-control-regex
  expect(run.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
});

test('pace fit reads a VTAB-1k layout of real image files, decoding through a cache', async () => {
  const task = path.join(temp.dir, 'vtab', 'eurosat');
  fs.mkdirSync(path.join(task, 'images', 'train'), { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < 40; i++) {
    const label = i % 4;
    const colour = [label === 0 ? 250 : 10, label === 1 ? 250 : 10, label === 2 ? 250 : 10];
    await sharp({
      create: { width: 20, height: 20, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } },
    })
      .png()
      .toFile(path.join(task, 'images', 'train', `${i}.png`));
    lines.push(`images/train/${i}.png ${label}`);
  }
  fs.writeFileSync(path.join(task, 'train800.txt'), lines.slice(0, 32).join('\n'));
  fs.writeFileSync(path.join(task, 'val200.txt'), lines.slice(32).join('\n'));
  using backbone = await createModel(tinyVit, { seed: 3, numClasses: 10 });
  await backbone.saveWeights(path.join(temp.dir, 'vtab-backbone.safetensors'));
  const vtab = { root: 'vtab', task: 'eurosat', mode: 'tune' };
  fs.writeFileSync(
    path.join(temp.dir, 'vtab.json'),
    JSON.stringify({
      model: { name: tinyVit, numClasses: 10, pretrained: 'vtab-backbone.safetensors' },
      adapters: { rank: 2 },
      data: { train: { vtab, part: 'train' }, validation: { vtab, part: 'test' }, cacheDir: 'decoded' },
      fit: { epochs: 2, batchSize: 8, evalEvery: 1 },
      runDir: 'vtab-run',
    }),
  );
  const run = pace(['fit', '--config', 'vtab.json', '--quiet']);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  // one cache per split, named by the split and a hash of where its images are
  expect(fs.readdirSync(path.join(temp.dir, 'decoded')).sort()).toEqual([
    expect.stringMatching(/^vtab-eurosat-tune-test\.16\.[0-9a-f]{10}\.decoded\.safetensors$/),
    expect.stringMatching(/^vtab-eurosat-tune-test\.16\.[0-9a-f]{10}\.decoded\.safetensors\.sha256$/),
    expect.stringMatching(/^vtab-eurosat-tune-train\.16\.[0-9a-f]{10}\.decoded\.safetensors$/),
    expect.stringMatching(/^vtab-eurosat-tune-train\.16\.[0-9a-f]{10}\.decoded\.safetensors\.sha256$/),
  ]);
  const metrics = fs
    .readFileSync(path.join(temp.dir, 'vtab-run', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n');
  // The last epoch's val_acc is the accuracy of the saved adapters on the decoded validation images (the eval
  // reads them back from the cache): a fit that logged another set's accuracy, or none, fails here.
  const last = JSON.parse(metrics[1]) as { epoch: number; val_acc: number };
  expect(last.epoch).toBe(1);
  const evaluated = pace([
    'eval',
    '--config',
    'vtab.json',
    '--adapters',
    path.join('vtab-run', 'adapters.safetensors'),
  ]);
  expect(evaluated.status).toBe(0);
  const report = JSON.parse(evaluated.stdout) as { samples: number; accuracy: number };
  expect(report.samples).toBe(8);
  expect(last.val_acc).toBe(report.accuracy);
});

// ---- What each flag and data kind of the CLI promises, checked against values computed here. ----

/** The run config of the flag and resume tests: a tiny ViT on the colour task, with a warm-up schedule. */
async function writeFlagConfig(file: string, fit: Record<string, unknown>): Promise<void> {
  if (!fs.existsSync(path.join(temp.dir, 'flags-backbone.safetensors'))) {
    using backbone = await createModel(tinyVit, { seed: 13 });
    await backbone.saveWeights(path.join(temp.dir, 'flags-backbone.safetensors'));
    await writeDataset('flags-train.safetensors', 100, 21);
    await writeDataset('flags-val.safetensors', 48, 22);
  }
  fs.mkdirSync(path.dirname(path.join(temp.dir, file)), { recursive: true });
  const up = path.relative(path.dirname(path.join(temp.dir, file)), temp.dir) || '.';
  const config = {
    model: { name: tinyVit, numClasses: 4, pretrained: `${up}/flags-backbone.safetensors` },
    adapters: { type: 'loramul_vptadd', rank: 2 },
    trainer: { optimizer: { lr: 0.01, weightDecay: 0.0005 }, pace: { sigma: 0.5, lambda: 0.1 }, seed: 4 },
    data: { train: `${up}/flags-train.safetensors`, validation: `${up}/flags-val.safetensors` },
    fit: { epochs: 5, batchSize: 16, evalEvery: 2, schedule: { warmupEpochs: 2, warmupLr: 1e-6, minLr: 1e-5 }, ...fit },
  };
  fs.writeFileSync(path.join(temp.dir, file), JSON.stringify(config));
}

const readMetrics = (runDir: string): Record<string, number>[] =>
  fs
    .readFileSync(path.join(temp.dir, runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));

test('--lr, --batch-size and --epochs override the config: the lr each epoch ran at and the steps each epoch took', async () => {
  // Bugs: a flag parsed but not passed on (the config's lr 0.01, batch 16 or 5 epochs would run); a schedule built
  // from the config's lr instead of the flag's.
  await writeFlagConfig('flags.json', {});
  const flags = ['--lr', '0.0371', '--batch-size', '24', '--epochs', '3'];
  const run = pace(['fit', '--config', 'flags.json', '--run-dir', 'flags-run', '--quiet', ...flags]);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const lrs = readMetrics('flags-run').map((logs) => logs.lr);
  // timm's warm-up, by hand: epoch e runs at f(e - 1), f(t) = warmupLr + t * (lr - warmupLr) / warmupEpochs for
  // t < warmupEpochs; f(-1) is taken as the warm-up start.
  expect(lrs).toEqual([1e-6, 1e-6, 1e-6 + 1 * ((0.0371 - 1e-6) / 2)]);
  const config = JSON.parse(fs.readFileSync(path.join(temp.dir, 'flags-run', 'config.json'), 'utf8'));
  expect(config.trainer.optimizer).toMatchObject({ lr: 0.0371, weightDecay: 0.0005 });
  expect(config.fit).toMatchObject({ epochs: 3, batchSize: 24 });
  // 100 samples in batches of 24: 4 steps an epoch (the partial batch dropped), 12 in 3 epochs (16 would be 18).
  const { tensors } = await loadTensors(path.join(temp.dir, 'flags-run', 'last.safetensors'));
  expect(Number(tensors['trainer.iteration'].toBigInt64Array()[0])).toBe(12);
  const adamSteps = Object.keys(tensors).filter((name) => name.endsWith('.step'));
  expect(adamSteps.length).toBeGreaterThan(0);
  for (const name of adamSteps) expect(Number(tensors[name].toBigInt64Array()[0])).toBe(12);
  for (const t of Object.values(tensors)) t.dispose();
});

test("pace fit's last line names a stop within an epoch: its steps are in the adapters, a resume repeats them", () => {
  // The SIGINT runs here stop between epochs or within one, as the machine's timing falls: both lines, fixed.
  const epochs = [{ epoch: 0 }, { epoch: 1 }] as unknown as History['epochs'];
  expect(stopLine({ stopReason: 'completed', epochs }, 'run/adapters.safetensors')).toBe(
    'completed after 2 epochs; adapters in run/adapters.safetensors',
  );
  const interrupted = { epoch: 2, steps: 7, stepsPerEpoch: 64 };
  expect(stopLine({ stopReason: 'aborted', epochs, interrupted }, 'run/adapters.safetensors')).toBe(
    "aborted after 2 epochs and 7 of epoch 2's 64 steps; adapters in run/adapters.safetensors (with those steps; a " +
      'resume starts again at epoch 2)',
  );
});

test('pace fit --resume continues a run stopped by SIGINT and ends with the weights and metrics of an uninterrupted run', async () => {
  // Bugs: --resume starting over from epoch 0 or fresh weights (different adapters, duplicated metrics lines), or
  // not restoring the optimizer and generator states (adapters differ in their bytes). It also needs two runs of
  // one config to start from the same adapters: an initialisation not seeded by the config fails it.
  await writeFlagConfig('resume.json', { epochs: 20, evalEvery: 5 });
  const whole = pace(['fit', '--config', 'resume.json', '--run-dir', 'resume-whole', '--quiet']);
  expect(whole.stderr).toBe('');
  expect(whole.status).toBe(0);

  // The child sends itself SIGINT as it prints its epoch 1 line (test/support/signal-at-line.js), after that
  // epoch's metrics and checkpoint: it stops within epoch 2 however fast it runs, never after its 20 epochs.
  const child = spawn(
    process.execPath,
    [
      '--require',
      path.join(__dirname, 'support', 'signal-at-line.js'),
      path.join(repoRoot, 'dist', 'cli.js'),
      'fit',
      '--config',
      'resume.json',
      '--run-dir',
      'resume-stopped',
    ],
    {
      cwd: temp.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PACE_TEST_SIGNAL_AT: '^epoch 1:', PACE_TEST_SIGNAL: 'SIGINT' },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const limit = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(limit);
      resolve(code);
    }),
  );
  expect(await exited).toBe(130);
  expect(stderr).toBe('');
  const stoppedAt = readMetrics('resume-stopped').length;
  expect(stoppedAt).toBeGreaterThanOrEqual(2);
  expect(stoppedAt).toBeLessThan(20); // it really was interrupted
  expect(stdout).toContain(`aborted after ${stoppedAt} epochs`);

  const resumed = pace(['fit', '--config', 'resume.json', '--resume', 'resume-stopped']);
  expect(resumed.stderr).toBe('');
  expect(resumed.status).toBe(0);
  // Only the epochs it had left were run ...
  expect(resumed.stdout.match(/^epoch \d+:/gm)).toEqual(
    Array.from({ length: 20 - stoppedAt }, (_, i) => `epoch ${stoppedAt + i}:`),
  );
  // ... and they ended where the uninterrupted run ended.
  const adapters = (dir: string) => fs.readFileSync(path.join(temp.dir, dir, 'adapters.safetensors'));
  expect(adapters('resume-stopped').equals(adapters('resume-whole'))).toBe(true);
  const keep = ({ epoch, loss, acc, lr, val_acc, val_loss }: Record<string, number>) => ({
    epoch,
    loss,
    acc,
    lr,
    val_acc,
    val_loss,
  });
  expect(readMetrics('resume-stopped').map(keep)).toEqual(readMetrics('resume-whole').map(keep));
});

test("pace fit's fast variant takes its datasetSize from the training set when the config leaves it out", async () => {
  // Bug: the config had to state the training set's size (an image folder's is not known before it is read), and
  // without it pace fit failed: "options.pace.datasetSize: the fast variant needs datasetSize".
  await writeFlagConfig('fast.json', { epochs: 2 });
  const config = JSON.parse(fs.readFileSync(path.join(temp.dir, 'fast.json'), 'utf8'));
  config.trainer.pace = { ...config.trainer.pace, variant: 'fast' };
  fs.writeFileSync(path.join(temp.dir, 'fast.json'), JSON.stringify(config));
  const run = pace(['fit', '--config', 'fast.json', '--run-dir', 'fast-run', '--quiet']);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  // pace eval takes the same config (it evaluates: the size does not matter there).
  const evaluation = pace(['eval', '--config', 'fast.json', '--adapters', 'fast-run/adapters.safetensors']);
  expect([evaluation.stderr, evaluation.status]).toEqual(['', 0]);
  // The same fit through the API with datasetSize given (100 samples) ends with the same adapters.
  using model = await createModel(tinyVit, {
    seed: config.trainer.seed,
    numClasses: 4,
    pretrained: path.join(temp.dir, 'flags-backbone.safetensors'),
  });
  model.addAdapters({ type: 'loramul_vptadd', rank: 2 });
  const { tensors } = await loadTensors(path.join(temp.dir, 'flags-train.safetensors'));
  const validation = await loadTensors(path.join(temp.dir, 'flags-val.safetensors'));
  const trainer = new Trainer(model, { ...config.trainer, pace: { ...config.trainer.pace, datasetSize: 100 } });
  await trainer.fit(new TensorDataset(tensors.images, tensors.labels), {
    ...config.fit,
    validation: new TensorDataset(validation.tensors.images, validation.tensors.labels),
    progress: false,
  });
  const fromCli = await loadTensors(path.join(temp.dir, 'fast-run', 'adapters.safetensors'));
  const state = model.stateDict();
  expect(Object.keys(fromCli.tensors).sort()).toEqual([...model.trainableParameters()].sort());
  for (const [name, value] of Object.entries(fromCli.tensors)) {
    expect([name, Array.from(value.toFloat32Array())]).toEqual([name, Array.from(state[name].toFloat32Array())]);
  }
  [tensors, validation.tensors, fromCli.tensors, state].forEach((record) =>
    Object.values(record).forEach((t) => t.dispose()),
  );
});

test('pace eval --data evaluates the file it names (relative to the working folder), as Trainer.evaluate does', async () => {
  // Bugs: --data ignored (the config's 48-sample validation set evaluated instead), or resolved against the
  // config's folder instead of the working folder.
  await writeFlagConfig('configs/eval.json', {});
  fs.mkdirSync(path.join(temp.dir, 'eval-data'), { recursive: true });
  await writeDataset('eval-data/other.safetensors', 40, 23);
  // Seeded: the adapters' initialisation decides whether 4 epochs reach the accuracy asserted below.
  using model = await createModel(tinyVit, { seed: 3, pretrained: path.join(temp.dir, 'flags-backbone.safetensors') });
  model.addAdapters({ type: 'loramul_vptadd', rank: 2 });
  {
    const { tensors } = await loadTensors(path.join(temp.dir, 'flags-train.safetensors'));
    const train = new TensorDataset(tensors.images, tensors.labels);
    await new Trainer(model, { optimizer: { lr: 0.01 } }).fit(train, {
      epochs: 4,
      batchSize: 16,
      schedule: false,
      progress: false,
    });
    for (const t of Object.values(tensors)) t.dispose();
  }
  const adaptersFile = path.join(temp.dir, 'eval-adapters.safetensors');
  await model.saveAdapters(adaptersFile);
  const run = pace([
    'eval',
    '--config',
    'configs/eval.json',
    '--adapters',
    adaptersFile,
    '--data',
    'eval-data/other.safetensors',
  ]);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const report = JSON.parse(run.stdout);

  const { tensors } = await loadTensors(path.join(temp.dir, 'eval-data', 'other.safetensors'));
  const expected = await new Trainer(model).evaluate(new TensorDataset(tensors.images, tensors.labels));
  for (const t of Object.values(tensors)) t.dispose();
  expect(report.samples).toBe(40);
  expect(report.accuracy).toBe(expected.accuracy);
  expect(report.accuracy).toBeGreaterThan(0.5); // the trained adapters were loaded (chance is 0.25)
  expect(Math.abs(report.loss - expected.loss)).toBeLessThanOrEqual(1e-6 * expected.loss);
});

// ---- The command line and the config, checked whole before anything is loaded ----

/**
 * A config naming a backbone and data that do not exist, with `overrides` merged into its trainer and fit: a
 * mistake reported by name (rather than the missing file) was found before anything was loaded.
 */
function writeUnloadableConfig(
  file: string,
  overrides: { trainer?: Record<string, unknown>; fit?: Record<string, unknown> } = {},
): void {
  const config = {
    model: { name: tinyVit, numClasses: 4, pretrained: 'missing-backbone.safetensors' },
    trainer: { optimizer: { lr: 0.01 }, ...overrides.trainer },
    data: { train: 'missing-train.safetensors', validation: 'missing-val.safetensors' },
    fit: { epochs: 2, batchSize: 16, ...overrides.fit },
  };
  fs.writeFileSync(path.join(temp.dir, file), JSON.stringify(config));
}

/** Each file of a folder with its bytes. */
const folderBytes = (dir: string): Record<string, string> =>
  Object.fromEntries(
    fs
      .readdirSync(path.join(temp.dir, dir))
      .sort()
      .map((name) => [name, fs.readFileSync(path.join(temp.dir, dir, name)).toString('base64')]),
  );

test("a config's fit section naming a run folder, a resume or progress is refused when read, naming the file and key", async () => {
  // Bug: "fit" was an unchecked record spread into Trainer.fit, so a config's fit.resume continued (and rewrote)
  // another run's folder whatever --run-dir said.
  await writeFlagConfig('owner.json', { epochs: 2 });
  const owner = pace(['fit', '--config', 'owner.json', '--run-dir', 'owner-run', '--quiet']);
  expect(owner.status).toBe(0);
  const before = folderBytes('owner-run');
  await writeFlagConfig('intruder.json', { epochs: 4, resume: 'owner-run' });
  const intruder = pace(['fit', '--config', 'intruder.json', '--run-dir', 'intruder-run', '--quiet']);
  expect(intruder.stderr).toContain(`pace fit: config 'intruder.json'.fit.resume: not a config setting`);
  expect(intruder.status).toBe(1);
  expect(folderBytes('owner-run')).toEqual(before);
  expect(fs.existsSync(path.join(temp.dir, 'intruder-run'))).toBe(false);
  for (const [key, value] of [
    ['runDir', 'elsewhere'],
    ['resumeFrom', 'best'],
    ['progress', true],
  ] as const) {
    writeUnloadableConfig(`fit-${key}.json`, { fit: { [key]: value } });
    for (const command of [
      ['fit', '--config', `fit-${key}.json`, '--run-dir', 'never'],
      ['eval', '--config', `fit-${key}.json`, '--adapters', 'missing.safetensors'],
    ]) {
      const run = pace(command);
      expect(run.stderr).toContain(`config 'fit-${key}.json'.fit.${key}: not a config setting`);
      expect(run.status).toBe(1);
    }
  }
});

test('the trainer and fit sections are checked whole before the model, the data or the process group', async () => {
  // Bug: a mistake there surfaced from Trainer or Trainer.fit only after the model and data had loaded (and after
  // the rendezvous, for a rank of several), as "options.…" without the config's name.
  const cases: [{ trainer?: Record<string, unknown>; fit?: Record<string, unknown> }, string][] = [
    [{ fit: { bogus: 1 } }, `config 'sections.json'.fit: Unrecognized key: "bogus"`],
    [{ fit: { evalEvery: 0 } }, `config 'sections.json'.fit.evalEvery: Too small`],
    [{ fit: { epochs: 1.5 } }, `config 'sections.json'.fit.epochs: Invalid input: expected int`],
    [{ trainer: { bogus: 1 } }, `config 'sections.json'.trainer: Unrecognized key: "bogus"`],
    [{ trainer: { optimizer: { lr: -1 } } }, `config 'sections.json'.trainer.optimizer.lr: Too small`],
    // a file's lr 0 under the cosine was found after loading, without the config's name (the flag's was not)
    [
      { trainer: { optimizer: { lr: 0 } } },
      `config 'sections.json'.trainer.optimizer.lr: 0 is no peak for the cosine schedule; give a positive rate, or "schedule": false`,
    ],
    [
      { fit: { schedule: false, scheduleStepping: 'step' } },
      `config 'sections.json'.fit.scheduleStepping steps the cosine schedule, which schedule: false turns off`,
    ],
  ];
  for (const [overrides, message] of cases) {
    writeUnloadableConfig('sections.json', overrides);
    const run = pace(['fit', '--config', 'sections.json', '--run-dir', 'never']);
    const [first] = run.stderr.split('\n');
    expect({ overrides, status: run.status, first }).toEqual({
      overrides,
      status: 1,
      first: expect.stringContaining(`pace fit: ${message}`),
    });
  }
  // One rank of two whose partner never comes: refused at once, not after the rendezvous times out.
  writeUnloadableConfig('sections.json', { fit: { bogus: 1 } });
  const rank = spawnSync(
    process.execPath,
    [path.join(repoRoot, 'dist', 'cli.js'), 'fit', '--config', 'sections.json', '--run-dir', 'never'],
    {
      cwd: temp.dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        RANK: '0',
        WORLD_SIZE: '2',
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(await freePort()),
        PACE_DISTRIBUTED_TIMEOUT: '2',
      },
    },
  );
  expect(rank.stderr).toContain(`config 'sections.json'.fit: Unrecognized key: "bogus"`);
  expect(rank.status).toBe(1);
});

test('bad flag values, and flags that would be ignored, are usage errors naming the flag (exit 2) before anything loads', () => {
  // Bugs: values were checked by Trainer.fit or launch() under their option names ("options.epochs", exit 1), after
  // the model and data had loaded; --resume-from without --resume, --run-dir with --resume and --markdown without
  // --domain-shift were ignored; pace sweep took --threads beyond the config's limit of 1024.
  writeUnloadableConfig('flags-only.json');
  const fit = ['fit', '--config', 'flags-only.json'];
  const evaluate = ['eval', '--config', 'flags-only.json', '--adapters', 'missing.safetensors'];
  const cases: [string[], string][] = [
    [[...fit, '--run-dir', 'never', '--epochs', '1.5'], "--epochs must be a whole number from 1, got '1.5'"],
    [[...fit, '--run-dir', 'never', '--batch-size', '0'], "--batch-size must be a whole number from 1, got '0'"],
    [[...fit, '--run-dir', 'never', '--lr=-1'], '--lr: Too small'],
    [
      [...fit, '--run-dir', 'never', '--resume-from', 'best'],
      '--resume-from chooses the checkpoint of --resume DIR: give --resume too',
    ],
    [[...fit, '--run-dir', 'a', '--resume', 'b'], '--resume DIR continues the run in DIR: it takes no --run-dir'],
    [
      [...fit, '--resume', 'never', '--resume-from', 'bogus'],
      "--resume-from must be last, previous or best, got 'bogus'",
    ],
    [[...evaluate, '--batch-size', '0'], "--batch-size must be a whole number from 1, got '0'"],
    [[...evaluate, '--markdown'], '--markdown formats the --domain-shift table: give --domain-shift too'],
    [['launch', '--nproc-per-node', '0', '--', 'true'], '--nproc-per-node: Too small'],
    [['launch', '--nproc-per-node', '1.5', '--', 'true'], '--nproc-per-node: Invalid input: expected int'],
    [['launch', '--nproc-per-node', '1e12', '--', 'true'], '--nproc-per-node: Too big: expected number to be <=1024'],
    [
      ['launch', '--nproc-per-node', '2', '--nnodes', '2000000000', '--', 'true'],
      '--nnodes: the world (processes per node × nodes) must be at most 2147483647',
    ],
    [['launch', '--nproc-per-node', '1', '--master-port', '70000', '--', 'true'], '--master-port: Too big'],
    [
      ['launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', '2', '--', 'true'],
      '--node-rank must be below --nnodes',
    ],
    [
      ['sweep', '--config', 'missing-sweep.json', '--threads', '100000'],
      '--threads: Too big: expected number to be <=1024',
    ],
    [
      ['sweep', '--config', 'missing-sweep.json', '--parallel', '0'],
      "--parallel must be a whole number from 1, got '0'",
    ],
    // Number() reads hexadecimal, binary and octal: --threads 0x10 ran 16 threads
    [['sweep', '--config', 'missing-sweep.json', '--threads', '0x10'], "--threads must be a number, got '0x10'"],
    [[...fit, '--run-dir', 'never', '--epochs', '0b11'], "--epochs must be a number, got '0b11'"],
    // --device was ignored without --gemm; a bad --model was exit 1 without naming the flag
    [['doctor', '--device', 'cuda'], '--device chooses where --gemm measures: give --gemm too'],
    [['serve', '--weights', vit28Weights, '--model', 'vit_nonexistent'], "--model: unknown model 'vit_nonexistent'"],
    [
      ['serve', '--weights', vit28Weights, '--model', '{"family": "vit", "imgSize": 16}'],
      '--model: embedDim: Invalid input: expected number',
    ],
    [
      [
        ...['serve', '--weights', vit28Weights, '--model', 'vit_tiny_patch16_224', '--request-timeout-ms', '5000'],
      ].concat(['--headers-timeout-ms', '6000']),
      '--headers-timeout-ms: must not exceed the request timeout',
    ],
  ];
  for (const [args, message] of cases) {
    const run = pace(args);
    const [first] = run.stderr.split('\n');
    expect({ args, status: run.status, first }).toEqual({ args, status: 2, first: expect.stringContaining(message) });
    expect(run.stderr).toContain(`Usage: pace ${args[0]}`);
    expect(run.stderr).not.toContain('options.');
  }
});

test('pace launch leaves -h and --help after -- to the command it runs', () => {
  // Bug: a help flag anywhere, even in the ranks' command, printed launch's usage instead of running anything.
  const run = pace(['launch', '--nproc-per-node', '1', '--', 'echo', '-h', '--help']);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(run.stdout).toBe('-h --help\n');
  const help = pace(['launch', '--help', '--', 'echo', 'never']);
  expect(help.status).toBe(0);
  expect(help.stdout).toMatch(/^Usage: pace launch --nproc-per-node N/);
});

/**
 * The data-kind checks use the demo's ViT, pretrained on Fashion-MNIST (28×28, so no source needs resizing): its
 * logits follow the pixels closely, so a wrongly decoded or normalised image moves the loss well past rounding.
 */
const vit28 = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4 } as const;
const vit28Weights = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');

/** Model input computed here, in float64: RGB pixels [N, 28, 28, 3] to ((x / 255 − mean) / std) [N, 3, 28, 28]. */
function normalise(pixels: Uint8Array, mean: number[], std: number[]): Float32Array {
  const count = pixels.length / (28 * 28 * 3);
  const out = new Float32Array(pixels.length);
  for (let n = 0; n < count; n++)
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 28 * 28; i++)
        out[(n * 3 + c) * 784 + i] = (pixels[(n * 784 + i) * 3 + c] / 255 - mean[c]) / std[c];
  return out;
}

/** Mean cross-entropy (float64), top-1 and top-5 accuracy of logits [N, C] against labels. */
function scores(logits: Float32Array, classes: number, labels: number[]) {
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  labels.forEach((label, n) => {
    const row = Array.from(logits.subarray(n * classes, (n + 1) * classes));
    const max = Math.max(...row);
    loss += max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0)) - row[label];
    const above = row.filter((v) => v > row[label]).length;
    top1 += above === 0 ? 1 : 0;
    top5 += above < 5 ? 1 : 0;
  });
  const n = labels.length;
  return { samples: n, accuracy: top1 / n, top5: classes >= 5 ? top5 / n : undefined, loss: loss / n };
}

const argmax = (logits: Float32Array, classes: number, n: number): number => {
  const row = Array.from(logits.subarray(n * classes, (n + 1) * classes));
  return row.indexOf(Math.max(...row));
};

const vitMean = [0.5, 0.5, 0.5]; // what ViT checkpoints expect (README: folders, lists and IDX use the model's own)
const imagenet = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }; // the benchmarks' constants

/**
 * Runs `pace eval` on a config whose test set is `source` (written by `write` once the labels are known) and
 * checks its report against the logits of the same model on `pixels`, the images as this test made them.
 * `chooseLabels` may pick labels from those logits (so the expected accuracy is known by construction).
 */
async function checkDataKind(
  name: string,
  classes: number,
  pixels: Uint8Array,
  normalization: { mean: number[]; std: number[] },
  chooseLabels: (logits: Float32Array) => number[],
  write: (labels: number[]) => Promise<unknown>,
) {
  const count = pixels.length / (28 * 28 * 3);
  using model = await createModel({ ...vit28, numClasses: classes }, { pretrained: vit28Weights, seed: 31 });
  await model.saveWeights(path.join(temp.dir, `${name}-backbone.safetensors`));
  model.addAdapters({ rank: 2 });
  await model.saveAdapters(path.join(temp.dir, `${name}-adapters.safetensors`));
  model.eval();
  using input = tensor(normalise(pixels, normalization.mean, normalization.std), [count, 3, 28, 28]);
  using logitsTensor = await model.forward(input);
  const logits = logitsTensor.toFloat32Array();
  const labels = chooseLabels(logits);
  const source = await write(labels);
  fs.writeFileSync(
    path.join(temp.dir, `${name}.json`),
    JSON.stringify({
      model: { name: vit28, numClasses: classes, pretrained: `${name}-backbone.safetensors` },
      adapters: { rank: 2 },
      data: { train: source, test: source },
      fit: { epochs: 1, batchSize: 8 },
    }),
  );
  const run = pace(['eval', '--config', `${name}.json`, '--adapters', `${name}-adapters.safetensors`]);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const report = JSON.parse(run.stdout);
  const expected = scores(logits, classes, labels);
  expect(report.samples).toBe(expected.samples);
  expect(report.accuracy).toBe(expected.accuracy);
  expect(report.top5).toBe(expected.top5);
  expect(Math.abs(report.loss - expected.loss)).toBeLessThanOrEqual(1e-6 * expected.loss);
  return report as { accuracy: number };
}

/** `count` random RGB images of `size`² (seeded), raw [N, size, size, 3]. */
function randomPixels(count: number, size: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  return Uint8Array.from({ length: count * size * size * 3 }, () => Math.floor(random() * 256));
}

const png = (raw: Uint8Array, size: number, channels: 1 | 3 | 4, file: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return sharp(Buffer.from(raw), { raw: { width: size, height: size, channels } })
    .png()
    .toFile(file);
};

/**
 * Labels with an accuracy of exactly 1/2 by construction: even samples get the model's own top class, odd ones
 * each other class in turn (so every class occurs, whatever the random model prefers).
 */
const halfRight = (classes: number, count: number) => (logits: Float32Array) =>
  Array.from({ length: count }, (_, n) => {
    const top = argmax(logits, classes, n);
    return n % 2 === 0 ? top : (top + 1 + (Math.floor(n / 2) % (classes - 1))) % classes;
  });

test("data kind 'idx': pace eval reads gzipped and plain IDX files as their bytes say, normalised as the model's", async () => {
  // Bugs: header or label offsets wrong, images transposed, grey not replicated to RGB, ImageNet's constants used
  // instead of the model's: each moves the loss off the one computed here from the same bytes.
  const gz = (file: string) => zlib.gunzipSync(fs.readFileSync(path.join('/usr/share/datasets/fashion-mnist', file)));
  const imagesIdx = gz('t10k-images-idx3-ubyte.gz');
  const labelsIdx = gz('t10k-labels-idx1-ubyte.gz');
  expect([imagesIdx.readUInt32BE(0), imagesIdx.readUInt32BE(8), imagesIdx.readUInt32BE(12)]).toEqual([2051, 28, 28]);
  expect(labelsIdx.readUInt32BE(0)).toBe(2049);
  const count = 48;
  const grey = imagesIdx.subarray(16, 16 + count * 784);
  const labels = Array.from(labelsIdx.subarray(8, 8 + count));
  const pixels = new Uint8Array(count * 784 * 3);
  grey.forEach((value, i) => pixels.fill(value, i * 3, i * 3 + 3));
  await checkDataKind(
    'idx',
    10,
    pixels,
    { mean: vitMean, std: vitMean },
    () => labels,
    async () => {
      const header = (magic: number, dims: number[]) => {
        const bytes = Buffer.alloc(4 + 4 * dims.length);
        bytes.writeUInt32BE(magic, 0);
        dims.forEach((d, i) => bytes.writeUInt32BE(d, 4 + 4 * i));
        return bytes;
      };
      fs.mkdirSync(path.join(temp.dir, 'idx'), { recursive: true });
      fs.writeFileSync(
        path.join(temp.dir, 'idx', 'images-idx3-ubyte.gz'),
        zlib.gzipSync(Buffer.concat([header(2051, [count, 28, 28]), grey])),
      );
      fs.writeFileSync(
        path.join(temp.dir, 'idx', 'labels-idx1-ubyte'),
        Buffer.concat([header(2049, [count]), Buffer.from(labels)]),
      );
      return { idx: ['idx/images-idx3-ubyte.gz', 'idx/labels-idx1-ubyte'] };
    },
  );
});

test("data kind 'folder': one class per subfolder in code-point order, grey and RGBA images as RGB, other files ignored", async () => {
  // Bugs: classes numbered in another order (locale or creation order: 'C-class' sorts before 'a-class'), a
  // text file taken for an image, grey or alpha images decoded wrongly: the accuracy leaves 1/2 or the loss moves.
  const count = 24;
  const pixels = randomPixels(count, 28, 41);
  for (let i = 0; i < 784; i++) pixels.fill(pixels[i * 3], i * 3, i * 3 + 3); // image 0 is grey
  const classNames = ['C-class', 'a-class', 'b-class']; // labels 0, 1, 2: sorted by code point, by hand
  const report = await checkDataKind(
    'folder',
    3,
    pixels,
    { mean: vitMean, std: vitMean },
    halfRight(3, count),
    async (labels) => {
      for (let n = 0; n < count; n++) {
        const file = path.join(temp.dir, 'images', classNames[labels[n]], `image-${n}.png`);
        const rgb = pixels.subarray(n * 2352, (n + 1) * 2352);
        if (n === 0)
          await png(
            Uint8Array.from({ length: 784 }, (_, i) => rgb[i * 3]),
            28,
            1,
            file,
          );
        else if (n === 1) {
          const rgba = Uint8Array.from({ length: 784 * 4 }, (_, i) =>
            i % 4 === 3 ? 77 : rgb[Math.floor(i / 4) * 3 + (i % 4)],
          );
          await png(rgba, 28, 4, file);
        } else await png(rgb, 28, 3, file);
      }
      fs.writeFileSync(path.join(temp.dir, 'images', 'a-class', 'notes.txt'), 'not an image');
      fs.writeFileSync(path.join(temp.dir, 'images', 'README.md'), 'not a class');
      return { folder: 'images' };
    },
  );
  expect(report.accuracy).toBe(0.5);
});

test('pace fit on an image folder records its class names: pace eval labels by them once that folder is gone; pace export keeps them', async () => {
  // Bugs: the names not recorded (eval then fails for the missing training folder), or a held-out folder labelled
  // by its own subfolders (its one class 'b-class' as 0, not 2): the loss moves off the one computed here.
  const classNames = ['C-class', 'a-class', 'b-class'];
  const train = randomPixels(12, 28, 53);
  for (let n = 0; n < 12; n++) {
    await png(
      train.subarray(n * 2352, (n + 1) * 2352),
      28,
      3,
      path.join(temp.dir, 'named-train', classNames[n % 3], `${n}.png`),
    );
  }
  const heldOut = randomPixels(4, 28, 59);
  for (let n = 0; n < 4; n++) {
    await png(
      heldOut.subarray(n * 2352, (n + 1) * 2352),
      28,
      3,
      path.join(temp.dir, 'named-test', 'b-class', `${n}.png`),
    );
  }
  const config = {
    model: { name: vit28, numClasses: 3, pretrained: vit28Weights },
    adapters: { rank: 2 },
    trainer: { seed: 1 },
    data: { train: { folder: 'named-train' }, test: { folder: 'named-test' } },
    fit: { epochs: 1, batchSize: 4 },
    runDir: 'named-run',
  };
  fs.writeFileSync(path.join(temp.dir, 'named.json'), JSON.stringify(config));
  const fit = pace(['fit', '--config', 'named.json', '--quiet']);
  expect(fit.stderr).toBe('');
  expect(fit.status).toBe(0);
  const adapters = path.join(temp.dir, 'named-run', 'adapters.safetensors');
  const { metadata } = await loadTensors(adapters).then((file) => {
    Object.values(file.tensors).forEach((t) => t.dispose());
    return file;
  });
  expect(JSON.parse(metadata!['pace_peft.adapters']).classNames).toEqual(classNames);
  // A head of more classes than the folder has keeps no names, not those its pretrained weights came with.
  {
    using named = await createModel({ ...vit28, numClasses: 10 }, { pretrained: vit28Weights });
    named.classNames = Array.from({ length: 10 }, (_, i) => `n${i}`);
    await named.saveWeights(path.join(temp.dir, 'named10.safetensors'));
  }
  const ten = { ...config, model: { ...config.model, numClasses: 10, pretrained: 'named10.safetensors' } };
  fs.writeFileSync(path.join(temp.dir, 'named10.json'), JSON.stringify({ ...ten, runDir: 'named10-run' }));
  expect(pace(['fit', '--config', 'named10.json', '--quiet']).status).toBe(0);
  const tenHeader = await readTensorHeader(path.join(temp.dir, 'named10-run', 'adapters.safetensors'));
  expect(JSON.parse(tenHeader.metadata!['pace_peft.adapters']).classNames).toBeUndefined();

  fs.renameSync(path.join(temp.dir, 'named-train'), path.join(temp.dir, 'named-train-moved'));
  const evaluation = pace(['eval', '--config', 'named.json', '--adapters', adapters]);
  expect(evaluation.stderr).toBe('');
  expect(evaluation.status).toBe(0);
  using model = await createModel({ ...vit28, numClasses: 3 }, { pretrained: vit28Weights });
  model.addAdapters({ rank: 2 });
  await model.loadAdapters(adapters);
  using input = tensor(normalise(heldOut, vitMean, vitMean), [4, 3, 28, 28]);
  using logits = await model.eval().forward(input);
  const expected = scores(logits.toFloat32Array(), 3, [2, 2, 2, 2]);
  const report = JSON.parse(evaluation.stdout);
  expect(report.accuracy).toBe(expected.accuracy);
  expect(Math.abs(report.loss - expected.loss)).toBeLessThanOrEqual(1e-6 * expected.loss);
  // --data takes the folder itself, or a source as the config writes one, relative to the working folder.
  for (const data of ['named-test', '{"folder": "named-test"}']) {
    const run = pace(['eval', '--config', 'named.json', '--adapters', adapters, '--data', data]);
    expect([data, run.stderr, run.status]).toEqual([data, '', 0]);
    expect(JSON.parse(run.stdout)).toEqual({ ...report, data: JSON.parse(run.stdout).data });
  }
  const badSource = pace(['eval', '--config', 'named.json', '--adapters', adapters, '--data', '{"folder": 3}']);
  expect([badSource.status, badSource.stderr]).toEqual([2, expect.stringContaining('--data: not a data source')]);

  const exported = pace([
    'export',
    '--config',
    'named.json',
    '--adapters',
    adapters,
    '--merged',
    '--out',
    'named.safetensors',
  ]);
  expect(exported.status).toBe(0);
  using served = await createModel(
    { ...vit28, numClasses: 3 },
    { pretrained: path.join(temp.dir, 'named.safetensors') },
  );
  expect(served.classNames).toEqual(classNames);
});

test("data.cacheDir is relative to the config's folder, for pace eval --data too", async () => {
  // Bug: with --data, pace eval resolved the config's cacheDir against the working folder: it missed the cache fit
  // had written beside the config, decoded everything again and left a stray ./cache.
  const pixels = randomPixels(4, 28, 61);
  for (let n = 0; n < 4; n++) {
    await png(
      pixels.subarray(n * 2352, (n + 1) * 2352),
      28,
      3,
      path.join(temp.dir, 'ce', 'imgs', `c${n % 2}`, `${n}.png`),
    );
  }
  const config = {
    model: { name: vit28, numClasses: 2, pretrained: vit28Weights },
    adapters: { rank: 2 },
    trainer: { seed: 1 },
    data: { train: { folder: 'imgs' }, cacheDir: 'cache' },
    fit: { epochs: 1, batchSize: 2 },
    runDir: 'run',
  };
  fs.writeFileSync(path.join(temp.dir, 'ce', 'run.json'), JSON.stringify(config));
  expect(pace(['fit', '--config', 'ce/run.json', '--quiet']).status).toBe(0);
  const cache = path.join(temp.dir, 'ce', 'cache');
  // The inode too: a rewrite goes through a new file renamed over the old, which a coarse clock may stamp alike.
  const cached = () =>
    fs.readdirSync(cache).map((f) => {
      const stat = fs.statSync(path.join(cache, f));
      return [f, stat.mtimeMs, stat.ino];
    });
  const before = cached();
  expect(before.some(([f]) => String(f).endsWith('.decoded.safetensors'))).toBe(true);
  const evaluation = pace(
    ['eval', '--config', 'ce/run.json', '--adapters', 'ce/run/adapters.safetensors'].concat(['--data', 'ce/imgs']),
  );
  expect([evaluation.status, evaluation.stderr]).toEqual([0, '']);
  expect(JSON.parse(evaluation.stdout).samples).toBe(4);
  expect(fs.existsSync(path.join(temp.dir, 'cache'))).toBe(false);
  expect(cached()).toEqual(before); // read, not written again
});

test("data kind 'list': a real ImageNet-A split list (paths with spaces, the label the last field)", async () => {
  // Bugs: the label taken from the first space, the path cut at a space, labels shifted: the loss moves.
  const all = fs
    .readFileSync(
      path.resolve(fixturesDir, '..', 'data-lists', 'domain-adaptation', 'imagenet-a', 'val_meta.list'),
      'utf8',
    )
    .trim()
    .split('\n');
  const lines = all.filter((_, i) => i % 500 === 7); // 15 lines over many classes
  expect(lines.some((line) => line.split(' ').length > 2)).toBe(true);
  const count = lines.length;
  const pixels = randomPixels(count, 28, 43);
  const labels = lines.map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
  await checkDataKind(
    'list',
    1000,
    pixels,
    { mean: vitMean, std: vitMean },
    () => labels,
    async () => {
      for (let n = 0; n < count; n++) {
        // PNG bytes under the list's .jpg names: lossless, and sharp reads a file by its content.
        const relative = lines[n].slice(0, lines[n].lastIndexOf(' '));
        await png(pixels.subarray(n * 2352, (n + 1) * 2352), 28, 3, path.join(temp.dir, 'list-root', relative));
      }
      fs.writeFileSync(path.join(temp.dir, 'val_meta.list'), `${lines.join('\n')}\n`);
      return { list: 'val_meta.list', root: 'list-root', numClasses: 1000 };
    },
  );
});

test("data kind 'fgvc': VPT's JSON splits, 'tune' testing on val.json, centre-cropped at size/0.875, ImageNet's constants", async () => {
  // Bugs: test.json read instead of val.json (6 samples, not 20), no or shifted centre crop, the model's
  // normalisation instead of ImageNet's: the sample count, accuracy 1/2 or the loss move.
  const count = 20;
  const stored = 32; // floor(28 / 0.875): the images are written at the size the shorter side is resized to
  const full = randomPixels(count, stored, 47);
  const pixels = new Uint8Array(count * 784 * 3); // the centre 28 × 28, cut here by hand: rows and columns 2..29
  for (let n = 0; n < count; n++)
    for (let y = 0; y < 28; y++)
      pixels.set(
        full.subarray(((n * stored + y + 2) * stored + 2) * 3, ((n * stored + y + 2) * stored + 30) * 3),
        (n * 28 + y) * 84,
      );
  const dir = path.join(temp.dir, 'fgvc', 'OxfordFlower');
  const report = await checkDataKind('fgvc', 102, pixels, imagenet, halfRight(102, count), async (labels) => {
    const split = async (name: string, first: number, n: number, labelOf: (i: number) => number) => {
      const entries: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const relative = `jpg/image_${String(first + i).padStart(5, '0')}.jpg`;
        const raw =
          name === 'val'
            ? full.subarray(i * stored * stored * 3, (i + 1) * stored * stored * 3)
            : randomPixels(1, stored, first + i);
        await png(raw, stored, 3, path.join(dir, relative));
        entries[relative] = labelOf(i);
      }
      fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(entries));
    };
    await split('train', 1, 8, (i) => i);
    await split('val', 101, count, (i) => labels[i]);
    await split('test', 201, 6, (i) => i + 50);
    const fgvc = { root: 'fgvc', dataset: 'OxfordFlower', mode: 'tune' };
    return { fgvc, part: 'test' };
  });
  expect(report.accuracy).toBe(0.5);
});

/** `pace` run without blocking the event loop (for tests whose servers run in this process), with `env` added. */
function paceAsync(
  args: string[],
  env: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), ...args], {
    cwd: temp.dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

test('pace pull downloads weights by name into the cache and prints where; pace fit takes a pretrained name', async () => {
  await writeDataset('pull-train.safetensors', 64, 5);
  using backbone = await createModel(tinyVit, { seed: 11 });
  await backbone.saveWeights(path.join(temp.dir, 'pull-backbone.safetensors'));
  const config = {
    architecture: 'vit_tiny_custom',
    num_classes: 4,
    pretrained_cfg: {
      input_size: [3, 16, 16],
      interpolation: 'bicubic',
      crop_pct: 0.9,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
    },
  };
  const hub = await startFakeHub({
    'test/tiny-backbone': {
      files: {
        'model.safetensors': fs.readFileSync(path.join(temp.dir, 'pull-backbone.safetensors')),
        'config.json': Buffer.from(JSON.stringify(config)),
      },
    },
  });
  try {
    const cache = path.join(temp.dir, 'hf-cache');
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: path.join(temp.dir, 'hf-home') };
    const pull = await paceAsync(['pull', 'hf-hub:test/tiny-backbone'], env);
    expect(pull.stderr).toBe('');
    expect(pull.status).toBe(0);
    const snapshot = path.join(cache, 'models--test--tiny-backbone', 'snapshots', commitOf('test/tiny-backbone'));
    expect(pull.stdout).toContain(`weights: ${path.join(snapshot, 'model.safetensors')}\n`);
    expect(pull.stdout).toContain(`config:  ${path.join(snapshot, 'config.json')}\n`);
    expect(fs.readFileSync(path.join(snapshot, 'model.safetensors'))).toEqual(
      fs.readFileSync(path.join(temp.dir, 'pull-backbone.safetensors')),
    );
    const requests = hub.requests.length;
    const again = await paceAsync(['pull', 'hf-hub:test/tiny-backbone', '--offline'], env);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('(already in the cache)');
    expect(hub.requests.length).toBe(requests);

    const unknown = await paceAsync(['pull', 'vit_nope_224'], env);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^pace pull: pretrained 'vit_nope_224': /);
    // Bug: these exited 1 naming options.* instead of the flag, as usage errors (exit 2) do.
    for (const [flag, message] of [
      ['--cache-dir=', '--cache-dir: Too small'],
      ['--revision=', '--revision: Too small'],
      ['--endpoint=ftp://x', '--endpoint: Invalid URL'],
      // (and these, past the schema's checks)
      ['--revision=../x', "--revision: pretrained 'hf-hub:test/tiny-backbone': '../x' is not a revision"],
      ['--endpoint=http://user:secret@example.org', '--endpoint must not hold a user name or password'],
    ]) {
      const bad = await paceAsync(['pull', 'hf-hub:test/tiny-backbone', flag], env);
      expect([flag, bad.status, bad.stderr]).toEqual([flag, 2, expect.stringContaining(message)]);
    }
    const twoRevisions = await paceAsync(['pull', 'hf-hub:test/tiny-backbone@v1', '--revision', 'v2'], env);
    expect([twoRevisions.status, twoRevisions.stderr]).toEqual([
      2,
      expect.stringContaining("--revision 'v2' disagrees with the revision the name gives, 'v1'"),
    ]);
    const listWithFlags = await paceAsync(['pull', '--list', '--offline', '--revision', 'v1'], env);
    expect([listWithFlags.status, listWithFlags.stderr]).toEqual([
      2,
      expect.stringContaining('--list names the known weights: it takes no --revision, --offline (only --json)'),
    ]);
    const list = await paceAsync(['pull', '--list'], env);
    expect(list.stdout).toMatch(/^\* vit_base_patch16_224\.orig_in21k +.*the PACE paper's ViT-B\/16 ImageNet-21K/m);
    expect(list.stdout).toMatch(/^ {2}vit_base_patch16_224\.augreg_in21k +AugReg ImageNet-21k/m);

    // the same run from the file and from the name (offline: out of the cache) ends with the same adapters
    const run = (pretrained: string, runDir: string) => ({
      model: { name: tinyVit, numClasses: 4, pretrained },
      adapters: { type: 'loramul_vptadd', rank: 2 },
      trainer: { optimizer: { lr: 0.01 }, seed: 3 },
      data: { train: 'pull-train.safetensors' },
      fit: { epochs: 2, batchSize: 16 },
      runDir,
    });
    fs.writeFileSync(
      path.join(temp.dir, 'pull-file.json'),
      JSON.stringify(run('pull-backbone.safetensors', 'pull-file')),
    );
    fs.writeFileSync(
      path.join(temp.dir, 'pull-name.json'),
      JSON.stringify(run('hf-hub:test/tiny-backbone', 'pull-name')),
    );
    const fromFile = await paceAsync(['fit', '--config', 'pull-file.json', '--quiet'], env);
    const fromName = await paceAsync(['fit', '--config', 'pull-name.json', '--quiet'], { ...env, HF_HUB_OFFLINE: '1' });
    expect(fromName.stderr).toBe('');
    expect(fromName.status).toBe(0);
    expect(fromFile.status).toBe(0);
    expect(fs.readFileSync(path.join(temp.dir, 'pull-name', 'adapters.safetensors'))).toEqual(
      fs.readFileSync(path.join(temp.dir, 'pull-file', 'adapters.safetensors')),
    );
    expect(hub.requests.length).toBe(requests);
  } finally {
    await hub.close();
  }
});

test('a number flag of many digits is read in linear time, not quadratic', () => {
  // Bug caught (a review): /^[+-]?(\d+\.?\d*|...)/ split a run of digits between \d+ and \d* every way there is before
  // refusing it: 50,000 digits and an 'x' took 3 s, 200,000 about 50.
  const started = performance.now();
  expect(() => numberFlag('--lr', `${'1'.repeat(200_000)}x`)).toThrow(/^--lr must be a number, got '1{200000}x'$/);
  expect(numberFlag('--lr', '1.5e-3')).toBe(1.5e-3);
  expect(performance.now() - started).toBeLessThan(2000);
});
