// A domain-adaptation sweep (#20): the paper's protocol on ImageNet-shaped lists of a few synthetic images (train on
// the 16-shot list of the run's seed, select on the source validation list, evaluate on the target sets), run to
// its table by target set, whose numbers are the run folders' domain-shift.json, which are an independent
// evaluation of each run's adapters.
import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { createModel, evaluateDomainShift, sweep } from '../lib';
import { makeTempDir } from './support/paths';
import { seededRandom, tinyVit } from './support/synthetic';

const temp = makeTempDir('sweep-domain-shift');
afterAll(() => temp.cleanup());

const spec = { ...tinyVit, depth: 1, numClasses: 1000 };
const lists = path.join(temp.dir, 'lists');
const images = path.join(temp.dir, 'images');
const classes = [6, 11, 401, 954]; // four of ImageNet-A's 200 classes

/** Writes `count` images per class as PNGs (a brighter channel per class, on noise) and their list file. */
async function writeList(file: string, folder: string, count: number, seed: number, labels = classes): Promise<void> {
  const random = seededRandom(seed);
  const lines: string[] = [];
  for (const [c, label] of labels.entries()) {
    for (let i = 0; i < count; i++) {
      const relative = `${folder}/n${String(label).padStart(8, '0')}/image_${seed}_${i}.png`;
      const pixels = Buffer.from(
        Array.from({ length: 20 * 20 * 3 }, (_, p) => Math.floor(random() * 120 + (p % 3 === c % 3 ? 120 : 0))),
      );
      const target = path.join(images, relative);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(
        target,
        await sharp(pixels, { raw: { width: 20, height: 20, channels: 3 } })
          .png()
          .toBuffer(),
      );
      lines.push(`${relative} ${label}`);
    }
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
}

test('σ ∈ {0, 0.5}: selection on the source validation list, the table by target set equals the runs', async () => {
  await writeList(path.join(lists, 'imagenet', 'train_meta.list.num_shot_2.seed_0'), 'train', 2, 1);
  // NOAH's one validation list, selected on whatever the shot count (it ships no other)
  await writeList(path.join(lists, 'imagenet', 'unofficial_val_list_4_shot16seed0'), 'train', 1, 2);
  await writeList(path.join(temp.dir, 'imagenet-val.list'), 'val', 1, 3);
  await writeList(path.join(temp.dir, 'imagenet-a.list'), 'a', 2, 4, classes.slice(0, 2));
  const base = path.join(temp.dir, 'base.safetensors');
  {
    using backbone = await createModel(spec, { seed: 5 });
    await backbone.saveWeights(base);
  }
  const targets = {
    imagenet: { list: path.join(temp.dir, 'imagenet-val.list'), root: images },
    'imagenet-a': { list: path.join(temp.dir, 'imagenet-a.list'), root: images },
  };
  const outcome = await sweep(
    {
      base: {
        model: { name: { ...tinyVit, depth: 1 }, pretrained: base },
        adapters: { rank: 2 },
        trainer: { optimizer: { lr: 0.01 } },
        fit: { epochs: 2, batchSize: 4, evalEvery: 1, schedule: false },
      },
      grid: { 'trainer.pace.sigma': [0, 0.5] },
      tasks: [{ domainShift: { lists, imagenet: images, targets, shots: 2 } }],
      seeds: [0],
    },
    { dir: path.join(temp.dir, 'sweep'), baseDir: temp.dir, parallel: 1, threads: 2 },
  );
  expect(outcome.failed).toEqual([]);
  const sweepDir = path.join(temp.dir, 'sweep');
  const runs = fs.readdirSync(sweepDir).filter((name) => fs.existsSync(path.join(sweepDir, name, 'run.json')));
  const evaluated = runs.filter((name) => fs.existsSync(path.join(sweepDir, name, 'domain-shift.json')));
  expect(runs).toHaveLength(3); // two tuning runs, one evaluation run of the chosen σ
  expect(evaluated).toHaveLength(1);
  const runDir = path.join(sweepDir, evaluated[0]);
  const report = JSON.parse(fs.readFileSync(path.join(runDir, 'domain-shift.json'), 'utf8'));
  expect(report.sets.map((s: { name: string }) => s.name)).toEqual(['imagenet', 'imagenet-a']);
  expect(report.sets[1].result.classes).toBe(200); // A's logits restricted to its 200 classes
  // finished.json keeps how each set was scored, for the table's marks
  expect(JSON.parse(fs.readFileSync(path.join(runDir, 'finished.json'), 'utf8')).domainShiftScoring).toEqual({
    imagenet: { classes: 1000, resize: 'center-crop' },
    'imagenet-a': { classes: 200, resize: 'center-crop' },
  });

  // The run's adapters evaluated here, independently of the run's process: the same numbers.
  using model = await createModel(spec, { pretrained: base });
  model.addAdapters({ rank: 2 });
  await model.loadAdapters(path.join(runDir, 'adapters.safetensors'));
  const again = await evaluateDomainShift(model, { targets, batchSize: 4 });
  expect(again.sets.map((s) => s.result.top1)).toEqual(
    report.sets.map((s: { result: { top1: number } }) => s.result.top1),
  );

  const markdown = fs.readFileSync(path.join(sweepDir, 'results.md'), 'utf8');
  const pct = (v: number) => (100 * v).toFixed(2);
  const [source, a] = report.sets.map((s: { result: { top1: number } }) => s.result.top1);
  expect(markdown).toContain('## Domain adaptation');
  expect(markdown).toContain('| Task | Setting | ImageNet (source) | -A | Mean (targets) |');
  expect(markdown).toContain(
    `| imagenet-2shot | selected per task | ${pct(source)} | ${pct(a)} | ${pct(a)} |`, // one seed: its values
  );
  const csv = fs.readFileSync(path.join(sweepDir, 'results.csv'), 'utf8').trim().split('\n');
  const header = csv[0].split(',');
  const row = csv.find((line) => line.includes(evaluated[0]))!.split(',');
  expect(Number(row[header.indexOf('top1:imagenet-a')])).toBe(a);
  expect(Number(row[header.indexOf('top1:imagenet')])).toBe(source);
  // The tuning runs validated on the source's held-out list, centre-cropped; the σ of the higher final validation
  // accuracy (the first on a tie) is chosen.
  const tuned = runs
    .filter((name) => name !== evaluated[0])
    .map((name) => {
      const run = JSON.parse(fs.readFileSync(path.join(sweepDir, name, 'run.json'), 'utf8'));
      const epochs = fs
        .readFileSync(path.join(sweepDir, name, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { val_acc?: number });
      return { sigma: run.trainer.pace.sigma as number, validation: run.data.validation, epochs };
    })
    .sort((x, y) => x.sigma - y.sigma);
  expect(tuned.map((run) => run.sigma)).toEqual([0, 0.5]);
  for (const run of tuned) {
    expect(run.validation).toMatchObject({
      list: path.join(lists, 'imagenet', 'unofficial_val_list_4_shot16seed0'),
      transform: 'center-crop',
    });
    expect(run.epochs.map((e) => e.val_acc !== undefined)).toEqual([true, true]);
  }
  const [atZero, atHalf] = tuned.map((run) => run.epochs.at(-1)!.val_acc!);
  const chosen = atHalf > atZero ? 0.5 : 0;
  // The evaluation run trained on the 2-shot list of its seed with the chosen σ.
  const config = JSON.parse(fs.readFileSync(path.join(runDir, 'run.json'), 'utf8'));
  expect(config.trainer.pace.sigma).toBe(chosen);
  expect(config.data.train.list).toBe(path.join(lists, 'imagenet', 'train_meta.list.num_shot_2.seed_0'));
  // the random resized crop and flip of the stronger augmentation the paper cites for domain adaptation
  expect(config.data.train.transform).toBe('resized-crop-flip');
  expect(config.data.domainShift['imagenet-a'].list).toBe(targets['imagenet-a'].list);
}, 120_000);
