import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { repoRoot } from './support/paths';

const node = (args: string[]) => spawnSync(process.execPath, args, { cwd: repoRoot, encoding: 'utf8' });

test('`pace-peft` resolves from plain Node (CommonJS) through the exports map', () => {
  const run = node(['-e', "const p = require('pace-peft'); console.log(Object.keys(p).sort().join(','))"]);
  expect(run.stderr).toBe('');
  expect(run.stdout.trim().split(',')).toEqual(
    expect.arrayContaining([
      'Tensor',
      'tensor',
      'loadTensors',
      'saveTensors',
      'readTensorHeader',
      'doctor',
      'measureGemm',
    ]),
  );
});

test('`pace-peft` resolves from plain Node (ES modules) with named imports', () => {
  const run = node([
    '--input-type=module',
    '-e',
    "import { tensor, loadTensors } from 'pace-peft'; const t = tensor([1, 2]); console.log(t.toString(), typeof loadTensors);",
  ]);
  expect(run.stderr).toBe('');
  expect(run.stdout.trim()).toBe('Tensor(float32[2], cpu) function');
});

test('the exports map gives types first and every target exists', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
  const main = pkg.exports['.'];
  expect(Object.keys(main)[0]).toBe('types');
  for (const target of [main.types, main.default, pkg.bin.pace]) {
    expect(fs.existsSync(path.join(repoRoot, target))).toBe(true);
  }
});
