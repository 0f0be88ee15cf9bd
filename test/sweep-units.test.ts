import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  PaceOptionError,
  parseSweepConfig,
  resultsCsv,
  resultsMarkdown,
  saveTensors,
  tensor,
  threadsPerRun,
  VTAB_GROUPS,
  VTAB_TASKS,
} from '../lib';
import { firstDifference } from '../lib/sweep/folder';
import { applySetting, expandSettings } from '../lib/sweep/grid';
import { pathNames, runName, runNames, sanitize } from '../lib/sweep/naming';
import { SweepPlan } from '../lib/sweep/plan';
import { selectionOf, summarize, type RunRow, type SweepResults, type TaskInfo } from '../lib/sweep/results';
import { meanStd, selectBest } from '../lib/sweep/stats';
import { checkpointOf, finalMetrics, measuredMetrics } from '../lib/sweep/run-state';
import { checkSplitLists } from '../lib/sweep/split-lists';
import { runEnvironment } from '../lib/sweep/sweep';
import { fixturesDir, makeTempDir, repoRoot } from './support/paths';

const listsTemp = makeTempDir('sweep-split-lists');
afterAll(() => listsTemp.cleanup());

const base = {
  model: { name: 'vit_base_patch16_224', numClasses: 10, pretrained: 'backbone.safetensors' },
  trainer: { optimizer: { lr: 1e-3 } },
  data: { train: 'train.safetensors', test: 'test.safetensors' },
  fit: { epochs: 2, batchSize: 8 },
};
const parse = (config: Record<string, unknown>) => parseSweepConfig({ base, ...config }, '/data');
const plan = (config: Record<string, unknown>) => new SweepPlan(parse(config), '/sweeps/s');

describe('sweep configs are validated with errors naming the field', () => {
  test.each([
    [{ grid: { sigma: [1] } }, "sweep.grid: 'sigma' is not an option path"],
    [{ grid: { 'trainer.seed': [1, 2] } }, "'trainer.seed' cannot be swept: the sweep's seeds set it"],
    [{ list: [{ 'fit.runDir': 'x' }] }, "sweep.list[0]: 'fit.runDir' cannot be swept"],
    [{ grid: { 'trainer.pace.sigma': [] } }, 'sweep.grid.trainer.pace.sigma: Too small'],
    [{ seeds: [0, 1, 0] }, 'sweep.seeds: seed 0 is listed twice'],
    [{ grids: {} }, 'sweep: Unrecognized key: "grids"'],
    [{ protocol: 'select' }, "sweep.tasks: protocol 'select' needs tasks"],
    [
      { tasks: [{ vtab: { root: 'vtab', task: 'cifar100' } }] },
      "sweep.tasks[0].vtab.task: 'cifar100' is not a VTAB-1k task",
    ],
    [
      { tasks: [{ name: 'mine', evaluate: { train: 'a', test: 'b' } }] },
      "sweep.tasks[0].tune: protocol 'select' needs the task's tuning data",
    ],
    [
      { tasks: [{ name: 'mine', tune: { train: 'a' }, evaluate: { train: 'a', test: 'b' } }] },
      'sweep.tasks[0].tune.validation: required',
    ],
    [
      { tasks: [{ vtab: { root: 'v', task: 'dtd' } }, { vtab: { root: 'w', task: 'dtd' } }] },
      "the task 'dtd' is listed twice",
    ],
  ])('%j', (config, message) => {
    expect(() => plan(config)).toThrow(PaceOptionError);
    expect(() => plan(config)).toThrow(message);
  });

  test('the base is validated as pace fit --config validates it', () => {
    expect(() => parseSweepConfig({ base: { ...base, model: { name: 'x' } } }, '/')).toThrow(
      'sweep.base.model.numClasses:',
    );
    expect(() => parseSweepConfig({ base: 'missing.json' }, '/nowhere')).toThrow("sweep.base 'missing.json'");
  });

  test('every grid point is validated before anything runs, naming the point', () => {
    expect(() => plan({ grid: { 'trainer.pace.sigma': [0.5, -1] } })).toThrow(
      'sweep point σ -1: trainer.pace.sigma: Too small',
    );
    expect(() => plan({ grid: { 'trainer.pace.sigmaa': [1] } })).toThrow('Unrecognized key: "sigmaa"');
    expect(() => plan({ grid: { 'fit.epochs': [0] } })).toThrow('fit.epochs: Too small');
    expect(() => plan({ grid: { 'model.name.depth': [2] } })).toThrow(
      "cannot set 'model.name.depth': 'model.name' is \"vit_base_patch16_224\" in the base config, not an object",
    );
    expect(() => plan({ grid: { 'adapters.rank': [2] }, list: [{ 'adapters.rank': 4 }] })).toThrow(
      "'adapters.rank' is in both the grid and the list",
    );
  });

  test('paths of one point where one holds the other are refused, naming both', () => {
    // Bug: `trainer.pace` set after `trainer.pace.sigma` replaced it: both runs trained with σ 0 (PACE off), named
    // and reported as σ 0.5 and σ 1.
    expect(() => plan({ grid: { 'trainer.pace.sigma': [0.5, 1] }, list: [{ 'trainer.pace': { lambda: 2 } }] })).toThrow(
      "sweep.list[0]['trainer.pace'] and sweep.grid['trainer.pace.sigma'] overlap ('trainer.pace' holds " +
        "'trainer.pace.sigma'): one run would set both, and one replace the other",
    );
    expect(() => plan({ grid: { 'trainer.optimizer.lr': [1e-3], 'trainer.optimizer': [{ lr: 1e-2 }] } })).toThrow(
      "sweep.grid['trainer.optimizer'] and sweep.grid['trainer.optimizer.lr'] overlap",
    );
    expect(() =>
      plan({ list: [{ 'adapters.rank': 4 }, { 'trainer.pace': { sigma: 1 }, 'trainer.pace.lambda': 1 }] }),
    ).toThrow("sweep.list[1]['trainer.pace'] and sweep.list[1]['trainer.pace.lambda'] overlap");
    expect(() => plan({ list: [{ 'trainer.pace': { sigma: 1 } }, { 'trainer.pace.sigma': 0.5 }] })).not.toThrow();
    // A path that shares a prefix but not a segment is not nested: the strict schema speaks instead, after the
    // nesting check found nothing.
    expect(() => plan({ grid: { 'trainer.pace': [{ sigma: 1 }] }, list: [{ 'trainer.paceX': 1 }] })).toThrow(
      'Unrecognized key: "paceX"',
    );
  });

  test('a grid of more points than any sweep could run is refused before it is planned', () => {
    // 10^6 points took 8 minutes to plan before anything was said.
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    const started = Date.now();
    expect(() =>
      plan({ grid: { 'fit.epochs': values, 'adapters.rank': values }, list: [{ 'trainer.pace.sigma': 1 }] }),
    ).toThrow('sweep: the grid and list make 1,000,000 points, more than the 100,000 a sweep plans');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('seeds, tasks and points that together make more runs than any sweep could run are refused at once', () => {
    // Bug: only points were counted; 100,000 seeds checked for repeats took quadratic time, then the plan built
    // and validated every run.
    const seeds = Array.from({ length: 200_000 }, (_, i) => i);
    let started = Date.now();
    expect(() => plan({ seeds })).toThrow(
      'sweep: 1 points × 1 tasks × 200000 runs each (one per seed) make 200,000 runs, more than the 100,000 a sweep ' +
        'plans: sweep fewer values, tasks or seeds',
    );
    expect(Date.now() - started).toBeLessThan(2000);
    const tasks = Object.keys(VTAB_TASKS).map((task) => ({ vtab: { root: 'v', task } }));
    expect(plan({ tasks, grid: { 'trainer.pace.sigma': [1, 2] }, seeds: [0, 1, 2] }).byName.size).toBe(19 * 2 * 4);
    expect(() =>
      plan({
        tasks,
        grid: { 'trainer.pace.sigma': Array.from({ length: 2000 }, (_, i) => i + 1) },
        seeds: [0, 1],
      }),
    ).toThrow('sweep: 2,000 points × 19 tasks × 3 runs each (the tuning run and one per seed) make 114,000 runs');
    // a repeat far down a long list is still found, in linear time
    started = Date.now();
    expect(() => plan({ seeds: [...seeds.slice(0, 90_000), 5] })).toThrow('sweep.seeds: seed 5 is listed twice');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('a point setting more option paths than a run config has is refused before the paths are compared', () => {
    // Bug: each point's paths were compared pairwise for overlaps: 50,000 single-value paths (one point) took
    // minutes before the first was found not to be an option.
    const grid = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`trainer.x${i}`, [1]]));
    const started = Date.now();
    expect(() => plan({ grid })).toThrow(
      'sweep: a point sets 50000 option paths (50000 from the grid, 0 from the list), more than the 100 a sweep ' +
        'takes: sweep fewer options',
    );
    expect(Date.now() - started).toBeLessThan(2000);
    const many = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`trainer.x${i}`, 1]));
    expect(() => plan({ grid: { 'adapters.rank': [4] }, list: [{}, many, many] })).toThrow(
      'sweep: a point sets 121 option paths (1 from the grid, 120 from the list)',
    );
  });

  test("a weights file a point names is relative to the sweep config, as the base's is", () => {
    // Bug: it was resolved against each run's folder, and every run failed naming a file no one meant.
    const runs = plan({
      grid: { 'model.pretrained': ['w1.safetensors', '/abs/w2.safetensors', 'hf-hub:timm/vit_base_patch16_224'] },
    }).initialRuns();
    expect(runs.map((run) => run.config.model.pretrained)).toEqual([
      '/data/w1.safetensors',
      '/abs/w2.safetensors',
      'hf-hub:timm/vit_base_patch16_224',
    ]);
    expect(plan({}).initialRuns()[0].config.model.pretrained).toBe('/data/backbone.safetensors');
  });

  test('a point given twice is refused: it would run twice into one folder', () => {
    // Bug: repeated values (or 0 and -0, both written "0") named two runs alike; the second was launched into the
    // first's finished folder, failed there, and results.csv counted the point twice.
    expect(() => plan({ grid: { 'trainer.pace.sigma': [0.5, 1, 0.5] } })).toThrow(
      "sweep.grid['trainer.pace.sigma']: values 0 and 2 are the same (0.5): each is a point, and one point runs once",
    );
    expect(() => plan({ grid: { 'trainer.pace.sigma': [0, -0] } })).toThrow('values 0 and 1 are the same (0)');
    expect(() =>
      plan({
        list: [
          { 'adapters.rank': 4, 'adapters.type': 'loraadd' },
          { 'adapters.type': 'loraadd', 'adapters.rank': 4 },
        ],
      }),
    ).toThrow('sweep.list: entries 0 and 1 are the same');
    const same = { setting: [], seed: 0, names: new Map<string, string>() };
    expect(() => runNames([same, { ...same }])).toThrow('the sweep plans two runs of the same setting (runs 0 and 1');
  });

  test('with tasks the base may leave out the data and class count the tasks give; without, it may not', () => {
    const taskBase = { model: { name: 'vit_base_patch16_224' }, data: { cacheDir: 'cache' }, fit: base.fit };
    const run = new SweepPlan(
      parseSweepConfig({ base: taskBase, tasks: [{ vtab: { root: 'vtab', task: 'dtd' } }] }, '/data'),
      '/s',
    ).initialRuns()[0];
    expect(run.config.model.numClasses).toBe(47);
    expect(run.config.data.cacheDir).toBe('/data/cache');
    expect(() => parseSweepConfig({ base: taskBase }, '/data')).toThrow('sweep.base.model.numClasses:');
    const mine = { name: 'mine', tune: { train: 'a', validation: 'b' }, evaluate: { train: 'a', test: 'b' } };
    expect(() => new SweepPlan(parseSweepConfig({ base: taskBase, tasks: [mine] }, '/data'), '/s')).toThrow(
      "sweep point base of task 'mine'.model.numClasses:",
    );
  });

  test('relative paths resolve against the config; protocols default by whether tasks are given', () => {
    const config = parse({ dir: 'out', tasks: [{ vtab: { root: 'vtab', task: 'dtd' } }] });
    expect(config.dir).toBe('/data/out');
    expect(config.protocol).toBe('select');
    expect(config.base.data).toEqual({ train: '/data/train.safetensors', test: '/data/test.safetensors' });
    expect(config.base.model.pretrained).toBe('/data/backbone.safetensors');
    expect(config.tasks).toEqual([{ vtab: { root: '/data/vtab', task: 'dtd' } }]);
    expect(parse({}).protocol).toBe('grid');
    expect(parse({ seeds: [5, 6] }).tuneSeed).toBe(5);
  });
});

describe('grids and lists expand to points', () => {
  test('a grid is a cartesian product, its first path varying slowest; a list adds its entries to each point', () => {
    const points = expandSettings(
      [
        ['trainer.pace.sigma', [0.5, 1]],
        ['trainer.pace.lambda', [1, 2, 3]],
      ],
      [{ 'adapters.type': 'loramul' }, { 'adapters.type': 'loraadd', 'adapters.rank': 4 }],
    );
    expect(points).toHaveLength(12);
    expect(points[0]).toEqual([
      ['trainer.pace.sigma', 0.5],
      ['trainer.pace.lambda', 1],
      ['adapters.type', 'loramul'],
    ]);
    expect(points[1]).toEqual([
      ['trainer.pace.sigma', 0.5],
      ['trainer.pace.lambda', 1],
      ['adapters.type', 'loraadd'],
      ['adapters.rank', 4],
    ]);
    expect(points.map((p) => `${p[0][1]}/${p[1][1]}`)).toEqual([
      '0.5/1',
      '0.5/1',
      '0.5/2',
      '0.5/2',
      '0.5/3',
      '0.5/3',
      '1/1',
      '1/1',
      '1/2',
      '1/2',
      '1/3',
      '1/3',
    ]);
    expect(expandSettings()).toEqual([[]]);
  });

  test('a point is applied to a copy of the config, creating objects on the way', () => {
    const config = { trainer: { optimizer: { lr: 1 } } };
    const applied = applySetting(config, [
      ['trainer.optimizer.lr', 2],
      ['trainer.pace.sigma', 0.5],
    ]);
    expect(applied).toEqual({ trainer: { optimizer: { lr: 2 }, pace: { sigma: 0.5 } } });
    expect(config).toEqual({ trainer: { optimizer: { lr: 1 } } });
  });
});

describe("option paths and task names are own names, never an object's prototype", () => {
  test("'__proto__', 'constructor' and 'prototype' are refused in a grid path and where a point is applied", () => {
    // Bug: trainer.__proto__.polluted passed the check, and applying it set Object.prototype.polluted.
    for (const segment of ['__proto__', 'constructor', 'prototype']) {
      expect(() => plan({ grid: { [`trainer.${segment}.polluted`]: ['yes'] } })).toThrow(
        `sweep.grid: 'trainer.${segment}.polluted' names '${segment}', which is not an option (no option path may)`,
      );
      expect(() => applySetting({ trainer: {} }, [[`trainer.${segment}.polluted`, 'yes']])).toThrow(PaceOptionError);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("a VTAB task or dataset named like an object's property is not a task", () => {
    // Bug: `name in table` accepted 'constructor' and 'toString' as VTAB tasks (with a function as class count).
    for (const name of ['constructor', 'toString', '__proto__']) {
      expect(() => plan({ tasks: [{ vtab: { root: 'v', task: name } }] })).toThrow(
        `sweep.tasks[0].vtab.task: '${name}' is not a VTAB-1k task`,
      );
    }
    expect(() => plan({ tasks: [{ fewShot: { root: 'f', dataset: 'hasOwnProperty', shots: 1 } }] })).toThrow(
      "'hasOwnProperty' is not a few-shot dataset",
    );
  });
});

describe('run folders are named from their settings', () => {
  const names = pathNames(['trainer.pace.sigma', 'trainer.pace.lambda', 'trainer.optimizer.lr']);

  test('readable parts joined by _, numbers as a person writes them', () => {
    const setting: [string, unknown][] = [
      ['trainer.pace.sigma', 0.5],
      ['trainer.pace.lambda', 1],
      ['trainer.optimizer.lr', 0.0001],
    ];
    expect(runName({ stage: 'tune', task: 'dtd', setting, seed: 0, names })).toBe(
      'tune_dtd_sigma=0.5_lambda=1_lr=1e-4_seed=0',
    );
    expect(runName({ setting: [], seed: 3, names })).toBe('seed=3');
  });

  test('paths that end alike are named in full; unsafe characters become -', () => {
    expect(pathNames(['adapters.rank', 'trainer.other.rank', 'fit.epochs'])).toEqual(
      new Map([
        ['adapters.rank', 'adapters.rank'],
        ['trainer.other.rank', 'trainer.other.rank'],
        ['fit.epochs', 'epochs'],
      ]),
    );
    expect(sanitize('a b/c\\d:e*?"<>|f')).toBe('a-b-c-d-e-f');
    expect(runName({ setting: [['adapters.targets', ['attn.qkv', 'mlp fc1']]], seed: 0, names: new Map() })).toBe(
      'adapters.targets=-attn.qkv-mlp-fc1-_seed=0',
    );
  });

  test('a long name keeps its first 80 characters and ends with a hash of the whole', () => {
    const long = (x: string) => runName({ setting: [['adapters.targets', x.repeat(60)]], seed: 0, names: new Map() });
    const name = long('ab');
    expect(name).toMatch(/^adapters\.targets=(ab)+a?_[0-9a-f]{8}$/);
    expect(name.length).toBe(89);
    expect(long('ab')).toBe(name);
    expect(long('ac')).not.toBe(name);
  });

  test('names that coincide once sanitized are told apart by a hash of their settings', () => {
    const parts = (value: unknown) => ({
      setting: [['adapters.type', value]] as [string, unknown][],
      seed: 0,
      names: pathNames(['adapters.type']),
    });
    const named = runNames([parts('a b'), parts('a-b'), parts(0.5), parts('0.5'), parts('c')]);
    expect(new Set(named).size).toBe(5);
    expect(named[4]).toBe('type=c_seed=0');
    expect(named[0]).toMatch(/^type=a-b_seed=0_[0-9a-f]{8}$/);
    expect(named[2]).toMatch(/^type=0\.5_seed=0_[0-9a-f]{8}$/);
  });

  test("a plan names every run and gives it its task's data for the stage", () => {
    const sweep = plan({
      grid: { 'trainer.pace.sigma': [0.5, 1] },
      tasks: [{ vtab: { root: 'vtab', task: 'dtd' } }, { fewShot: { root: 'fs', dataset: 'food101', shots: [1, 16] } }],
      seeds: [1, 2],
      base: { ...base, data: { ...base.data, cacheDir: 'cache' } },
    });
    const tuning = sweep.initialRuns();
    expect(tuning.map((run) => run.name)).toEqual([
      'tune_dtd_sigma=0.5_seed=1',
      'tune_dtd_sigma=1_seed=1',
      'tune_food101-1shot_sigma=0.5_seed=1',
      'tune_food101-1shot_sigma=1_seed=1',
      'tune_food101-16shot_sigma=0.5_seed=1',
      'tune_food101-16shot_sigma=1_seed=1',
    ]);
    expect(tuning[0].dir).toBe('/sweeps/s/tune_dtd_sigma=0.5_seed=1');
    const vtab = { root: '/data/vtab', task: 'dtd' };
    expect(tuning[0].config.data).toEqual({
      train: { vtab: { ...vtab, mode: 'tune' }, part: 'train' },
      validation: { vtab: { ...vtab, mode: 'tune' }, part: 'test' },
      cacheDir: '/data/cache',
    });
    expect(tuning[0].config.model.numClasses).toBe(47);
    expect(tuning[0].config.trainer).toEqual({ optimizer: { lr: 1e-3 }, pace: { sigma: 0.5 }, seed: 1 });
    const evaluation = sweep.evaluationRuns(tuning[0].task, 1);
    expect(evaluation.map((run) => run.name)).toEqual(['eval_dtd_sigma=1_seed=1', 'eval_dtd_sigma=1_seed=2']);
    expect(evaluation[1].config.data).toMatchObject({
      train: { vtab: { ...vtab, mode: 'evaluate' }, part: 'train' },
      test: { vtab: { ...vtab, mode: 'evaluate' }, part: 'test' },
    });
    const fewShot = sweep.evaluationRuns(tuning[4].task, 0)[1];
    expect(fewShot.config.data).toMatchObject({
      train: { fewShot: { root: '/data/fs', dataset: 'food101', shots: 16, seed: 2 }, part: 'train' },
      test: { fewShot: { root: '/data/fs', dataset: 'food101', shots: 16, seed: 2 }, part: 'test' },
    });
    expect(tuning[4].config.data).toMatchObject({ validation: { part: 'val' } });
    expect(fewShot.config.model.numClasses).toBe(101);
  });
});

test("a sweep's few-shot seeds must have their lists: checked before anything runs, naming the seeds there", () => {
  // Bug: the README's seeds 1, 2, 3 (NOAH's lists are seeds 0, 1, 2) failed the seed-3 evaluation runs only after
  // the whole tuning stage.
  const root = path.resolve(fixturesDir, '..', 'data-lists', 'few-shot');
  const fewShot = (seeds: number[]) =>
    plan({ tasks: [{ fewShot: { root, dataset: 'oxford-flowers102', shots: [1, 16] } }], seeds });
  expect(() => checkSplitLists(fewShot([0, 1, 2]))).not.toThrow();
  const list = path.join(root, 'oxford-flowers102', 'annotations', 'train_meta.list.num_shot_1.seed_3');
  expect(() => checkSplitLists(fewShot([1, 2, 3]))).toThrow(
    `sweep task oxford-flowers102-1shot (evaluate, seed 3): split list '${list}' does not exist (the seeds whose lists are there: 0, 1, 2)`,
  );
});

test("a VTAB or FGVC task's lists of each stage must be there: checked before anything runs, naming the file", () => {
  // Bug: only few-shot and given lists were checked: a mistyped root failed every tuning run (each after loading
  // its model), and a missing test list the evaluation runs after the whole tuning stage.
  const vtabRoot = path.resolve(fixturesDir, '..', 'data-lists', 'vtab-1k');
  const vtab = (root: string) => plan({ tasks: [{ vtab: { root, task: 'cifar' } }], seeds: [0] });
  expect(() => checkSplitLists(vtab(vtabRoot))).not.toThrow();
  const copy = path.join(listsTemp.dir, 'vtab-without-test');
  fs.cpSync(vtabRoot, copy, { recursive: true });
  fs.rmSync(path.join(copy, 'cifar', 'test.txt'));
  expect(() => checkSplitLists(vtab(copy))).toThrow(
    `sweep task cifar (evaluate, seed 0): split list '${path.join(copy, 'cifar', 'test.txt')}' does not exist`,
  );
  const typo = path.join(listsTemp.dir, 'vtab-1k-typo');
  expect(() => checkSplitLists(vtab(typo))).toThrow(
    `sweep task cifar (tune, seed 0): split list '${path.join(typo, 'cifar', 'train800.txt')}' does not exist`,
  );
  const fgvcRoot = path.join(listsTemp.dir, 'fgvc');
  fs.mkdirSync(path.join(fgvcRoot, 'CUB_200_2011'), { recursive: true });
  for (const name of ['train.json', 'val.json']) fs.writeFileSync(path.join(fgvcRoot, 'CUB_200_2011', name), '{}');
  const fgvc = plan({ tasks: [{ fgvc: { root: fgvcRoot, dataset: 'CUB_200_2011' } }], seeds: [0] });
  expect(() => checkSplitLists(fgvc)).toThrow(
    `sweep task CUB_200_2011 (evaluate, seed 0): split list '${path.join(fgvcRoot, 'CUB_200_2011', 'test.json')}' does not exist`,
  );
});

test("a domain-shift task is tuned on seed 0 only: the validation list shares images with the other seeds' lists", () => {
  // Bug: tuning on seed 1 or 2 (the first of `seeds` by default) selected on validation images it had trained on.
  const lists = path.resolve(fixturesDir, '..', 'data-lists', 'domain-adaptation');
  const imagesOf = (file: string) =>
    new Set(
      fs
        .readFileSync(path.join(lists, 'imagenet', file), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split(' ')[0]),
    );
  const validation = imagesOf('unofficial_val_list_4_shot16seed0');
  const shared = (seed: number) =>
    [...imagesOf(`train_meta.list.num_shot_16.seed_${seed}`)].filter((image) => validation.has(image)).length;
  expect([0, 1, 2].map(shared)).toEqual([0, 37, 41]);
  const targets = { 'imagenet-a': { list: '/lists/a.list', root: '/images' } };
  const task = { domainShift: { lists, imagenet: '/images', targets, shots: 16 } };
  expect(() => parse({ tasks: [task], seeds: [1, 2] })).toThrow(
    "sweep.tasks[0]: ImageNet's validation list was drawn beside the seed-0 training list, and seed 1's training " +
      'list shares images with it, so tuning on it would select on images it trained on: set tuneSeed to 0',
  );
  expect(parse({ tasks: [task], seeds: [1, 2], tuneSeed: 0 }).tuneSeed).toBe(0);
  expect(parse({ tasks: [task], seeds: [0, 1, 2] }).tuneSeed).toBe(0);
});

describe('selection and mean ± std', () => {
  test('mean and population standard deviation, in closed form', () => {
    const { mean, std, n } = meanStd([0.7, 0.8, 0.9]);
    expect(mean).toBeCloseTo(0.8, 15);
    expect(std).toBeCloseTo(Math.sqrt(0.02 / 3), 15);
    expect(n).toBe(3);
    expect(meanStd([0.25])).toEqual({ mean: 0.25, std: 0, n: 1 });
    expect(meanStd([]).n).toBe(0);
  });

  test('the highest score wins, the first on ties; unscored points are passed over', () => {
    expect(selectBest([0.5, 0.7, 0.7, 0.6])).toBe(1);
    expect(selectBest([undefined, 0.2, NaN, 0.1])).toBe(1);
    expect(selectBest([undefined, undefined])).toBeUndefined();
  });

  test("a run's accuracy that ended not finite is no score: its last finite value would stand for a diverged run", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-measured-'));
    try {
      const lines = [
        { epoch: 0, loss: 1, val_acc: 0.9, test_acc: 0.8 },
        { epoch: 1, loss: null, val_acc: null, test_acc: 0.7 },
      ];
      fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      expect(measuredMetrics(dir)).toEqual({ epochs: 2, val_acc: undefined, test_acc: 0.7 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a task's selection reads its finished tuning runs' validation accuracy", () => {
    const rows = [0.6, 0.9, 0.95].map((val_acc, point) =>
      row({ stage: 'tune', point, label: `p${point}`, val_acc, status: point === 2 ? 'failed' : 'finished' }),
    );
    expect(selectionOf(undefined, rows)).toEqual({ point: 1, label: 'p1', valAcc: 0.9, candidates: 3, finished: 2 });
  });
});

function row(fields: Partial<RunRow> & { val_acc?: number; test_acc?: number }): RunRow {
  const { val_acc, test_acc, ...rest } = fields;
  return {
    name: `run${Math.random()}`,
    dir: '/x',
    stage: 'evaluate',
    point: 0,
    label: 'σ 0.5',
    setting: [['trainer.pace.sigma', 0.5]],
    seed: 0,
    status: 'finished',
    metrics: { epochs: 2, val_acc, test_acc },
    ...rest,
  };
}

describe('results in the paper layout', () => {
  const vtab = (name: string, group: string): TaskInfo => ({ name, kind: 'vtab', group });
  const results = (rows: RunRow[], protocol: 'select' | 'grid' = 'select'): SweepResults => ({
    protocol,
    paths: ['trainer.pace.sigma'],
    seeds: [0, 1],
    rows,
    selections: [],
    summaries: summarize(rows),
  });

  test('VTAB-1k by group: each group mean after its tasks, then the mean of the group means', () => {
    const rows = [
      row({ task: vtab('cifar', 'Natural'), test_acc: 0.7, seed: 0 }),
      row({ task: vtab('cifar', 'Natural'), test_acc: 0.7, seed: 1 }),
      row({ task: vtab('dtd', 'Natural'), test_acc: 0.5 }),
      row({ task: vtab('clevr_count', 'Structured'), test_acc: 0.4, seed: 0 }),
      row({ task: vtab('clevr_count', 'Structured'), test_acc: 0.6, seed: 1 }),
      row({ task: vtab('eurosat', 'Specialized'), test_acc: 0.9 }),
      row({ task: vtab('eurosat', 'Specialized'), stage: 'tune', val_acc: 0.1 }), // tuning runs are not reported
      row({ task: vtab('dtd', 'Natural'), test_acc: 0.1, status: 'unfinished' }),
    ];
    const markdown = resultsMarkdown(results(rows));
    // groups in the paper's order whatever the order of the runs; Natural (0.7 + 0.5) / 2, Structured 0.5,
    // Specialized 0.9, Mean (0.6 + 0.9 + 0.5) / 3
    expect(markdown).toContain(
      [
        '## VTAB-1k',
        '',
        '| Setting | cifar | dtd | **Natural** | eurosat | **Specialized** | clevr_count | **Structured** | **Mean** |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
        '| selected per task | 70.00 ± 0.00 | 50.00 (n=1 of 2) | **60.00** | 90.00 (n=1 of 2) | **90.00** | 50.00 ± 10.00 | **50.00** | **66.67** |',
      ].join('\n'),
    );
    expect(markdown).toContain('Not finished: ');
    expect(markdown).not.toContain('## Other tasks');
  });

  test('under grid, one row per point; few-shot by shots; other tasks as plain rows', () => {
    const fewShot = (shots: number): TaskInfo => ({
      name: `food101-${shots}shot`,
      kind: 'fewShot',
      dataset: 'food101',
      shots,
    });
    const rows = [
      row({ task: fewShot(16), test_acc: 0.8 }),
      row({ task: fewShot(1), test_acc: 0.3 }),
      row({ task: fewShot(1), test_acc: 0.35, point: 1, label: 'σ 1', setting: [['trainer.pace.sigma', 1]] }),
      row({ task: { name: 'mine', kind: 'other' }, val_acc: 0.25, seed: 0 }),
      row({ task: { name: 'mine', kind: 'other' }, val_acc: 0.75, seed: 1 }),
    ];
    const markdown = resultsMarkdown(results(rows, 'grid'));
    expect(markdown).toContain(
      [
        '| Dataset | Setting | 1-shot | 16-shot |',
        '| --- | --- | --- | --- |',
        '| food101 | σ 0.5 | 30.00 (n=1 of 2) | 80.00 (n=1 of 2) |',
        '| food101 | σ 1 | 35.00 (n=1 of 2) | — |',
      ].join('\n'),
    );
    expect(markdown).toContain('## Other tasks');
    expect(markdown).toContain('| mine | σ 0.5 | 50.00 ± 25.00 | 2 | val_acc |');
    expect(markdown).not.toContain('## Selection');
  });

  test("a task or setting name's | and line breaks stay inside its Markdown cell", () => {
    // Bug: a task named "cars | trucks" split its row into one cell more than the header.
    const rows = [row({ task: { name: 'cars | trucks', kind: 'other' }, val_acc: 0.5, label: 'path\\to\nσ 1' })];
    const markdown = resultsMarkdown(results(rows, 'grid'));
    expect(markdown).toContain('| cars \\| trucks | path\\\\to σ 1 | 50.00 (n=1 of 2) | 1 | val_acc |');
  });

  test('results.csv: one row per run at full precision, cells quoted where needed', () => {
    const csv = resultsCsv({
      ...results([
        row({ name: 'a', task: vtab('dtd', 'Natural'), test_acc: 0.123456789, seed: 2 }),
        row({ name: 'b', setting: [['trainer.pace.sigma', 'x,"y"']], status: 'failed' }),
      ]),
    });
    expect(csv).toBe(
      [
        'stage,task,group,shots,trainer.pace.sigma,seed,run,status,epochs,val_acc,test_acc',
        'evaluate,dtd,Natural,,0.5,2,a,finished,2,,0.123456789',
        'evaluate,,,,"x,""y""",0,b,failed,2,,',
        '',
      ].join('\n'),
    );
  });

  test('a cell over fewer seeds than planned says how many; one seed shows its value alone', () => {
    // Bug: 1 of 3 seeds finished printed `90.00 ± 0.00`, which reads as three seeds that agree.
    const cifar = vtab('cifar', 'Natural');
    const rows = [
      row({ task: cifar, test_acc: 0.9, seed: 0 }),
      row({ task: cifar, seed: 1, status: 'failed' }),
      row({ task: cifar, seed: 2, status: 'failed' }),
    ];
    const markdown = resultsMarkdown({ ...results(rows), seeds: [0, 1, 2] });
    expect(markdown).toContain('| selected per task | 90.00 (n=1 of 3) | **90.00** | **90.00** |');
    expect(markdown).not.toContain('± 0.00');
    const two = [row({ task: cifar, test_acc: 0.9, seed: 0 }), row({ task: cifar, test_acc: 0.8, seed: 1 })];
    expect(resultsMarkdown({ ...results(two), seeds: [0, 1, 2] })).toContain('| 85.00 ± 5.00 (n=2 of 3) |');
    expect(resultsMarkdown(results(two))).toContain('| selected per task | 85.00 ± 5.00 | **85.00** | **85.00** |');
    const plain = [row({ task: { name: 'mine', kind: 'other' }, val_acc: 0.25 })];
    expect(resultsMarkdown({ ...results(plain, 'grid'), seeds: [0] })).toContain(
      '| mine | σ 0.5 | 25.00 | 1 | val_acc |',
    );
  });

  test("a group's mean waits for every task of the group in the sweep, the overall mean for every group", () => {
    // Bug: the means were taken over whichever tasks had results, so a group of one finished task read as its mean.
    const rows = [
      row({ task: vtab('cifar', 'Natural'), test_acc: 0.7 }),
      row({ task: vtab('dtd', 'Natural'), stage: 'tune', val_acc: 0.5, status: 'finished' }),
      row({ task: vtab('eurosat', 'Specialized'), test_acc: 0.9 }),
    ];
    const markdown = resultsMarkdown({ ...results(rows), seeds: [0] });
    expect(markdown).toContain(
      [
        '| Setting | cifar | dtd | **Natural** | eurosat | **Specialized** | **Mean** |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        '| selected per task | 70.00 | — | — | 90.00 | **90.00** | — |',
      ].join('\n'),
    );
  });

  test('a group whose seeds measured different accuracies takes the one most measured, and counts those seeds', () => {
    // Bug: one seed without test_acc switched its group to val_acc, which VTAB's evaluation runs lack: NaN ± NaN.
    const cifar = vtab('cifar', 'Natural');
    const rows = [
      row({ task: cifar, test_acc: 0.6, seed: 0 }),
      row({ task: cifar, test_acc: 0.8, seed: 1 }),
      row({ task: cifar, val_acc: 0.1, seed: 2 }),
    ];
    expect(summarize(rows)).toEqual([
      expect.objectContaining({ metric: 'test_acc', values: [0.6, 0.8], seeds: [0, 1], n: 2, mean: 0.7 }),
    ]);
    expect(resultsMarkdown({ ...results(rows), seeds: [0, 1, 2] })).toContain('| 70.00 ± 10.00 (n=2 of 3) |');
    const tie = [row({ test_acc: 0.6, seed: 0 }), row({ val_acc: 0.2, seed: 1 })];
    expect(summarize(tie)[0]).toMatchObject({ metric: 'test_acc', values: [0.6], n: 1 });
    const mostlyValidation = [row({ val_acc: 0.2, seed: 0 }), row({ val_acc: 0.4, seed: 1 }), row({ test_acc: 0.9 })];
    expect(summarize(mostlyValidation)[0]).toMatchObject({ metric: 'val_acc', values: [0.2, 0.4], n: 2 });
    const unreadable = [row({ test_acc: 0.6 }), row({ seed: 1, problem: 'finished.json: not readable JSON' })];
    expect(summarize(unreadable)[0]).toMatchObject({ values: [0.6], n: 1 });
    // Bug: a problem quoting a file's lines broke the list: '## oops' became a heading, '| a |' a table row
    const quoting = [row({ test_acc: 0.6 }), row({ seed: 1, problem: "finished.json: '{\n## oops\n| a | b |'" })];
    const markdown = resultsMarkdown(results(quoting));
    expect(markdown).toContain("finished.json: '{ ## oops | a | b |'");
    expect(markdown.split('\n').filter((line) => line.startsWith('## oops') || line.startsWith('| a'))).toEqual([]);
  });

  test("a domain-adaptation set a seed did not evaluate is left out of that set's mean, not NaN", () => {
    const task: TaskInfo = { name: 'imagenet-16shot', kind: 'domainShift', shots: 16 };
    const shifted = (seed: number, domainShift: Record<string, number>) => ({
      ...row({ task, seed }),
      metrics: { epochs: 2, domainShift },
    });
    const [summary] = summarize([
      shifted(0, { imagenet: 0.8, 'imagenet-a': 0.3, 'imagenet-r': 0.5 }),
      shifted(1, { imagenet: 0.7, 'imagenet-a': 0.4 }),
    ]);
    expect(summary.sets).toEqual({
      imagenet: { mean: 0.75, std: expect.closeTo(0.05, 12), n: 2 },
      'imagenet-a': { mean: 0.35, std: expect.closeTo(0.05, 12), n: 2 },
      'imagenet-r': { mean: 0.5, std: 0, n: 1 },
    });
    // the mean over the shifted sets: of the seeds that evaluated every one of them
    expect(summary).toMatchObject({ metric: 'target_mean', values: [0.4], seeds: [0], n: 1 });
    // Bug: with the source set alone every seed counted as complete, and its mean of no sets was NaN ± NaN.
    const sourceOnly = [shifted(0, { imagenet: 0.7 }), shifted(1, { imagenet: 0.71 })];
    expect(summarize(sourceOnly)[0]).toMatchObject({ values: [], seeds: [], n: 0 });
    expect(resultsMarkdown(results(sourceOnly))).not.toContain('NaN');
  });

  test("a set scored over other classes or squashed says so in the sweep's table, as in the evaluation's", () => {
    // Bug: a target with classes 'all' and resize 'squash-crop' printed as the masked, centre-cropped figure.
    const task: TaskInfo = { name: 'imagenet-16shot', kind: 'domainShift', shots: 16 };
    const scored = (seed: number, aScoring: { classes: number; resize?: 'center-crop' | 'squash-crop' }) => ({
      ...row({ task, seed }),
      metrics: {
        epochs: 2,
        domainShift: { imagenet: 0.8, 'imagenet-a': 0.3 },
        domainShiftScoring: { imagenet: { classes: 1000, resize: 'center-crop' as const }, 'imagenet-a': aScoring },
      },
    });
    const oneSeed = (scoring: Parameters<typeof scored>[1]) =>
      resultsMarkdown({ ...results([scored(0, scoring)]), seeds: [0] });
    const noah = oneSeed({ classes: 1000, resize: 'squash-crop' });
    expect(noah).toContain('| 80.00 | 30.00 (1000 classes, squashed) | 30.00 |');
    const masked = oneSeed({ classes: 200, resize: 'center-crop' });
    expect(masked).toContain('| 80.00 | 30.00 | 30.00 |');
    const squashedOnly = oneSeed({ classes: 200, resize: 'squash-crop' });
    expect(squashedOnly).toContain('| 30.00 (squashed) |');
    // Seeds scored differently, averaged into one cell, say so rather than wear the first seed's label.
    const mixed = resultsMarkdown(
      results([
        scored(0, { classes: 200, resize: 'center-crop' }),
        scored(1, { classes: 1000, resize: 'squash-crop' }),
      ]),
    );
    expect(mixed).toContain('30.00 ± 0.00 (seeds scored differently)');
    // A finished.json written before the scoring was kept: its domain-shift.json says how the run scored.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-scoring-'));
    try {
      fs.writeFileSync(
        path.join(dir, 'finished.json'),
        JSON.stringify({ run: 'x', epochs: 2, domainShift: { 'imagenet-a': 0.3 } }),
      );
      fs.writeFileSync(
        path.join(dir, 'domain-shift.json'),
        JSON.stringify({
          sets: [{ name: 'imagenet-a', result: { samples: 4, classes: 1000, resize: 'squash-crop', top1: 0.3 } }],
        }),
      );
      expect(finalMetrics(dir).domainShiftScoring).toEqual({ 'imagenet-a': { classes: 1000, resize: 'squash-crop' } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("VTAB_GROUPS holds each of VTAB-1k's 19 tasks once", () => {
    const tasks = VTAB_GROUPS.flatMap((group) => group.tasks);
    expect([...tasks].sort()).toEqual(Object.keys(VTAB_TASKS).sort());
    expect(VTAB_GROUPS.map((group) => group.tasks.length)).toEqual([7, 4, 8]);
  });
});

describe('scheduling and the sweep folder', () => {
  test('concurrent runs share the CPU threads; GPU slots each see one GPU', () => {
    expect(threadsPerRun(16, 3)).toBe(5);
    expect(threadsPerRun(2, 4)).toBe(1);
    const env = runEnvironment({ PATH: '/bin' }, { threads: 5, slot: 3, gpus: [0, 1] });
    expect(env).toEqual({ PATH: '/bin', PACE_NUM_THREADS: '5', OMP_NUM_THREADS: '5', CUDA_VISIBLE_DEVICES: '1' });
    expect(runEnvironment({}, { threads: 2, slot: 0 }).CUDA_VISIBLE_DEVICES).toBeUndefined();
  });

  test('a changed config is named by its first difference', () => {
    const stored = { grid: { 'trainer.pace.sigma': [0.5, 1] }, seeds: [0] };
    expect(firstDifference(stored, stored)).toBeUndefined();
    expect(firstDifference(stored, { ...stored, grid: { 'trainer.pace.sigma': [0.5, 2] } })).toBe(
      'grid.trainer.pace.sigma[1]',
    );
    expect(firstDifference(stored, { ...stored, seeds: [0, 1] })).toBe('seeds[1]');
    expect(firstDifference(stored, { ...stored, tasks: [] })).toBe('tasks');
  });

  test('paths in a run config are absolute', () => {
    const run = plan({}).initialRuns().at(0);
    expect(run?.config.data).toEqual({
      train: path.join('/data', 'train.safetensors'),
      test: path.join('/data', 'test.safetensors'),
    });
    // Bug: the base's domain-adaptation targets kept their relative paths, which each run resolved against its own
    // folder: every run failed its check of the lists before training.
    const shifted = {
      ...base,
      data: { ...base.data, domainShift: { 'imagenet-a': { list: 'a/val.list', root: 'a' } } },
    };
    const withTargets = new SweepPlan(parseSweepConfig({ base: shifted }, '/data'), '/sweeps/s').initialRuns().at(0);
    expect(withTargets?.config.data.domainShift).toEqual({
      'imagenet-a': { list: '/data/a/val.list', root: '/data/a' },
    });
  });
});

describe("the sweep folder's lock", () => {
  // Bug caught: the lock was checked, then written, so processes starting together all took it (4 of 4).
  const temp = makeTempDir('sweep-lock');
  afterAll(() => temp.cleanup());
  // Each opener says how it fared, then holds what it took until its stdin closes (every one has answered by
  // then, so a slow starter never finds the winner gone).
  const opener = `const { openSweepFolder } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'sweep', 'folder'))});
const [dir, start] = [process.argv[1], Number(process.argv[2])];
while (Date.now() < start) {}
try { openSweepFolder(dir, { base: {}, grid: {}, seeds: [0], protocol: 'grid' }); console.log('opened'); }
catch (error) { console.log(error.constructor.name); }
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));`;

  /** Starts `count` openers of `dir` at the same moment; resolves to what each said, once all have exited. */
  async function openTogether(dir: string, count: number): Promise<string[]> {
    const start = Date.now() + 700;
    const children = Array.from({ length: count }, () =>
      spawn(process.execPath, ['-e', opener, dir, String(start)], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    const said = await Promise.all(
      children.map(
        (child) =>
          new Promise<string>((resolve) => {
            let out = '';
            child.stdout.on('data', (chunk: Buffer) => {
              out += chunk.toString();
              if (out.includes('\n')) resolve(out.trim());
            });
            child.on('exit', () => resolve(out.trim()));
          }),
      ),
    );
    await Promise.all(
      children.map((child) => {
        const exited = new Promise((resolve) => child.on('exit', resolve));
        child.stdin.end();
        return exited;
      }),
    );
    return said;
  }

  test('of processes opening one folder at the same moment, exactly one gets it; a dead holder is replaced', async () => {
    for (let trial = 0; trial < 3; trial++) {
      const outputs = await openTogether(path.join(temp.dir, `together-${trial}`), 4);
      expect(outputs.sort()).toEqual(['PaceBusyError', 'PaceBusyError', 'PaceBusyError', 'opened']);
    }
    let deadPid = 4_000_000;
    while (fs.existsSync(`/proc/${deadPid}`)) deadPid += 1;
    const stale = path.join(temp.dir, 'stale');
    fs.mkdirSync(stale);
    fs.writeFileSync(path.join(stale, 'sweep.lock'), `${deadPid}\n`);
    expect(await openTogether(stale, 1)).toEqual(['opened']);
    expect(fs.readdirSync(stale).filter((name) => name.includes('.tmp-'))).toEqual([]);
    // Processes breaking one stale lock together: one breaks it at a time, and exactly one takes the folder.
    const staleTogether = path.join(temp.dir, 'stale-together');
    fs.mkdirSync(staleTogether);
    fs.writeFileSync(path.join(staleTogether, 'sweep.lock'), JSON.stringify({ pid: deadPid, hostname: os.hostname() }));
    expect((await openTogether(staleTogether, 4)).sort()).toEqual([
      'PaceBusyError',
      'PaceBusyError',
      'PaceBusyError',
      'opened',
    ]);
    // (the opener exits without releasing: its lock stays, and nothing else)
    expect(fs.readdirSync(staleTogether).sort()).toEqual(['sweep.json', 'sweep.lock']);
  });
});

test('a killed run whose last checkpoint is unreadable is resumed from its previous one', async () => {
  // Bug caught: the sweep read the epoch from previous.safetensors but launched `pace fit --resume`, which starts
  // from last.safetensors and failed on every later sweep.
  const temp = makeTempDir('sweep-checkpoint-of');
  try {
    const dir = temp.dir;
    using weight = tensor(new Float32Array([1]), [1]);
    await saveTensors(path.join(dir, 'previous.safetensors'), { weight }, { metadata: { epoch: '2' } });
    fs.writeFileSync(path.join(dir, 'last.safetensors'), 'cut short');
    expect(await checkpointOf(dir)).toEqual({ exists: true, epochs: 3, from: 'previous' });
    fs.copyFileSync(path.join(dir, 'previous.safetensors'), path.join(dir, 'last.safetensors'));
    expect(await checkpointOf(dir)).toEqual({ exists: true, epochs: 3, from: 'last' });
  } finally {
    temp.cleanup();
  }
});
