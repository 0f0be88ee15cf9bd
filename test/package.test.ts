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

test('the shipped types: a consumer compiles against them, and `new Tensor()` or `new Model()` does not', () => {
  // Bug: their constructors were stripped from the .d.ts (@internal), so TypeScript took them for public and
  // argument-free: `new Model()` compiled, then failed at run time with a TypeError from deep inside.
  const dir = path.join(repoRoot, '.cache', `types-check-${process.pid}`); // inside the package: 'pace-peft' resolves to it
  fs.mkdirSync(dir, { recursive: true });
  try {
    const file = path.join(dir, 'consumer.ts');
    fs.writeFileSync(
      file,
      [
        "import { Model, Tensor, createModel, tensor } from 'pace-peft';",
        'const made = tensor([1, 2]);',
        'const shape: number[] = made.shape;',
        "void createModel('vit_base_patch16_224', { seed: 1 }).then((model: Model) => model.dispose());",
        'new Tensor();',
        'new Model();',
        'void shape;',
      ].join('\n'),
    );
    const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    const flags = [
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
    ];
    const run = node([tsc, ...flags, '--types', 'node', file]);
    const errors = run.stdout.trim().split('\n');
    expect(errors).toEqual([
      expect.stringMatching(/consumer\.ts\(5,1\): error TS2554: Expected 1 arguments, but got 0\.$/),
      expect.stringMatching(/consumer\.ts\(6,1\): error TS2554: Expected 3-4 arguments, but got 0\.$/),
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
