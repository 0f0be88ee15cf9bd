import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { readTensorHeader } from '../lib';
import { makeTempDir, repoRoot } from './support/paths';

test('the committed demo backbone is a timm-layout ViT with its provenance', async () => {
  const header = await readTensorHeader(
    path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors'),
  );
  expect(header.metadata?.command).toMatch(/^tsx scripts\/pretrain-demo-backbone\.ts/);
  expect(Number(header.metadata?.test_accuracy)).toBeGreaterThan(0.8);
  expect(header.entries.map((e) => e.name)).toEqual(
    expect.arrayContaining(['cls_token', 'blocks.3.mlp.fc2.weight', 'head.weight']),
  );
});

const runs = makeTempDir('demo');
afterAll(() => runs.cleanup()); // also when an expectation fails

test('npm run demo runs end to end (here with one shot, one seed and two epochs), prints its table and writes its report', () => {
  const run = spawnSync(
    process.execPath,
    [
      path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
      'examples/demo.ts',
      '--shots',
      '1',
      '--seeds',
      '1',
      '--epochs',
      '2',
      '--test-per-class',
      '10',
      '--runs',
      runs.dir,
    ],
    { cwd: repoRoot, encoding: 'utf8' },
  );
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('task: 1-shot handwritten digits, 1 seeds, 2 epochs, tested on 100 held-out digits');
  expect(run.stdout).toMatch(/^\| LoRA-mul \+ VPT-add \| \d+\.\d ± 0\.0 % \| \d+\.\d s \|$/m);
  expect(run.stdout).toMatch(/^\| \+ PACE \(σ 0\.5, λ 1\) \| \d+\.\d ± 0\.0 % \| \d+\.\d s \|$/m);
  const report = path.join(runs.dir, 'report.html');
  expect(run.stdout).toContain(`report of the 2 runs (open it in a browser): ${report}`);
  const json = /<script type="application\/json" id="pace-report-data">(.*?)<\/script>/s.exec(
    fs.readFileSync(report, 'utf8'),
  )![1];
  const data = JSON.parse(json) as { runs: { label: string; epochs: Record<string, number>[] }[] };
  expect(data.runs.map((r) => r.label)).toEqual(['baseline', 'σ 0.5, λ 1']);
  for (const { epochs } of data.runs) {
    expect(epochs).toHaveLength(2);
    for (const key of ['gradNorm', 'fpDistance', 'test_acc']) expect(epochs.every((e) => key in e)).toBe(true);
  }
});
