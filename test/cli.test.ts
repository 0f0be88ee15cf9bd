import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { createModel, loadTensors, saveTensors, tensor } from '../lib';
import { makeTempDir, repoRoot } from './support/paths';
import { colourData, tinyVit } from './support/synthetic';

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
  expect(fs.readdirSync(path.join(temp.dir, 'decoded')).sort()).toEqual([
    'vtab-eurosat-tune-test.16.decoded.safetensors',
    'vtab-eurosat-tune-train.16.decoded.safetensors',
  ]);
  const metrics = fs
    .readFileSync(path.join(temp.dir, 'vtab-run', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n');
  expect(JSON.parse(metrics[1]).val_acc).toBeGreaterThanOrEqual(0);
});
