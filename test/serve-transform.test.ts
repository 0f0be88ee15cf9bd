import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import {
  createInferenceServer,
  createModel,
  disposeTensors,
  loadTensors,
  EVAL_TRANSFORM_METADATA_KEY,
  evaluationTransformOf,
  loadDatasetSource,
  loadImages,
  parseSplitList,
  prepareImages,
  readEvalTransform,
  readTensorHeader,
  saveTensors,
  tensor,
  type Preprocessing,
} from '../lib';
import { makeTempDir, repoRoot } from './support/paths';
import { listen, postImage } from './support/serve';
import { seededRandom } from './support/synthetic';

const temp = makeTempDir('serve-transform');
afterAll(() => temp.cleanup());

const cli = path.join(repoRoot, 'dist', 'cli.js');
// bounded: a serve that started instead of refusing would otherwise hold the test forever
const pace = (args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { cwd: temp.dir, encoding: 'utf8', timeout: 120_000 });

const vit28 = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4 } as const;
const demoWeights = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const imagenet = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const vitNormalization: { mean: [number, number, number]; std: [number, number, number] } = {
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
};

/** Random RGB PNGs of other shapes than square, so a stretch and a centre crop see different pixels. */
async function writeImages(folder: string, sizes: [number, number][], seed: number): Promise<string[]> {
  const random = seededRandom(seed);
  fs.mkdirSync(path.join(temp.dir, folder), { recursive: true });
  const names: string[] = [];
  for (const [i, [width, height]] of sizes.entries()) {
    const raw = Buffer.from(Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256)));
    const name = `${folder}-${i}.png`;
    await sharp(raw, { raw: { width, height, channels: 3 } })
      .png()
      .toFile(path.join(temp.dir, folder, name));
    names.push(name);
  }
  return names;
}

type Prediction = { label: string; probability: number };

/** The server's answers for each image file, by label. */
async function served(base: string, files: string[]): Promise<Map<string, number>[]> {
  const answers: Map<string, number>[] = [];
  for (const file of files) {
    const response = await postImage(base, fs.readFileSync(file));
    expect(response.status).toBe(200);
    const { predictions } = (await response.json()) as { predictions: Prediction[] };
    answers.push(new Map(predictions.map((p) => [p.label, p.probability])));
  }
  return answers;
}

const testSource = {
  list: 'test.txt',
  root: 'test',
  numClasses: 3,
  transform: 'center-crop',
  normalization: 'imagenet',
} as const;
let merged = '';
let files: string[] = [];
let labels: number[] = [];

beforeAll(async () => {
  const trainNames = await writeImages(
    'train',
    [
      [40, 30],
      [30, 44],
      [36, 36],
      [50, 29],
      [29, 33],
      [45, 31],
    ],
    3,
  );
  fs.writeFileSync(path.join(temp.dir, 'train.txt'), trainNames.map((n, i) => `${n} ${i % 3}\n`).join(''));
  const testNames = await writeImages(
    'test',
    [
      [45, 33],
      [30, 52],
      [64, 40],
      [29, 29],
      [80, 30],
    ],
    5,
  );
  labels = testNames.map((_, i) => (i + 1) % 3);
  fs.writeFileSync(path.join(temp.dir, 'test.txt'), testNames.map((n, i) => `${n} ${labels[i]}\n`).join(''));
  files = testNames.map((n) => path.join(temp.dir, 'test', n));
  const config = {
    model: { name: vit28, numClasses: 3, pretrained: demoWeights },
    adapters: { rank: 2 },
    trainer: { seed: 1 },
    data: {
      train: { ...testSource, list: 'train.txt', root: 'train', transform: 'crop-flip' },
      test: testSource,
    },
    fit: { epochs: 1, batchSize: 3 },
    runDir: 'run',
  };
  fs.writeFileSync(path.join(temp.dir, 'run.json'), JSON.stringify(config));
  const fit = pace(['fit', '--config', 'run.json', '--quiet']);
  expect([fit.status, fit.stderr]).toEqual([0, '']);
  const exported = pace([
    ...['export', '--config', 'run.json', '--adapters', 'run/adapters.safetensors'],
    ...['--merged', '--out', 'merged.safetensors'],
  ]);
  expect([exported.status, exported.stderr]).toEqual([0, '']);
  merged = path.join(temp.dir, 'merged.safetensors');
}, 120_000);

test('pace export records how the run evaluated: the test list centre-cropped at 0.875, bilinear, ImageNet constants', async () => {
  // Bugs: nothing recorded (a server then applies the model's own mean 0.5 and its crop), or the training list's
  // transform (crop-flip) taken for the evaluation's.
  expect(await readEvalTransform(merged)).toEqual({
    resize: 'center-crop',
    cropPct: 0.875,
    interpolation: 'bilinear',
    ...imagenet,
  });
});

test('the server answers for an upload exactly what pace eval computes for that file', async () => {
  // Bugs: the upload stretched (or cropped by libvips' resampling, or at timm's 0.9) where the run's evaluation
  // took torchvision's centre crop; the model's normalisation where the run used ImageNet's. Each moves the
  // probabilities far beyond float32 rounding (checked below: the model's own default answers otherwise).
  using model = await createModel({ ...vit28, numClasses: 3 }, { pretrained: merged });
  const dataset = await loadDatasetSource(testSource, {
    preprocessing: model.preprocessing,
    baseDir: temp.dir,
    numClasses: 3,
  });
  using input = await prepareImages(dataset.images, { size: 28, ...dataset.normalization! });
  using logits = await model.forward(input);
  const expected = softmaxRows(logits.toFloat64Array(), 3);

  const transform = await readEvalTransform(merged);
  const recorded = createInferenceServer(model, { transform, topK: 3 });
  const answers = await served(await listen(recorded.server), files).finally(() => recorded.close());
  answers.forEach((answer, i) =>
    expected[i].forEach((p, c) => expect([i, c, Math.abs(answer.get(String(c))! - p) < 2e-6]).toEqual([i, c, true])),
  );
  // pace eval's loss is the mean cross-entropy of these same probabilities
  const evaluation = pace(['eval', '--config', 'run.json', '--adapters', 'run/adapters.safetensors']);
  expect([evaluation.status, evaluation.stderr]).toEqual([0, '']);
  const loss = -answers.reduce((sum, answer, i) => sum + Math.log(answer.get(String(labels[i]))!), 0) / files.length;
  expect(Math.abs(JSON.parse(evaluation.stdout).loss - loss)).toBeLessThan(1e-5);

  // libvips alone (decode: 'fast'): the same geometry, its own resampling (on these random-noise images, where a
  // level's difference anywhere counts, probabilities moved up to 0.11)
  const fast = createInferenceServer(model, { transform, topK: 3, decode: 'fast' });
  const fastAnswers = await served(await listen(fast.server), files).finally(() => fast.close());
  const fastApart = Math.max(
    ...fastAnswers.map((answer, i) => Math.max(...expected[i].map((p, c) => Math.abs(answer.get(String(c))! - p)))),
  );
  console.log(`decode 'fast': probabilities at most ${fastApart.toExponential(2)} from the exact decode's`);
  expect(fastApart).toBeGreaterThan(0);
  expect(fastApart).toBeLessThan(0.25);

  const timmDefault = createInferenceServer(model, { topK: 3 });
  const other = await served(await listen(timmDefault.server), files).finally(() => timmDefault.close());
  const apart = Math.max(
    ...other.map((answer, i) => Math.max(...expected[i].map((p, c) => Math.abs(answer.get(String(c))! - p)))),
  );
  expect(apart).toBeGreaterThan(1e-3);
});

test('a test set of packed images (a tensor file with extents) is recorded as the centre crop pace eval takes of it', async () => {
  // Bug: every tensor file was recorded as a stretch, but pace eval centre-crops packed images: served answers
  // moved off the evaluation (mean cross-entropy 1.353 against eval's 1.260 in the review's case).
  const entries = parseSplitList(path.join(temp.dir, 'test.txt'), { root: path.join(temp.dir, 'test'), numClasses: 3 });
  const { dataset } = await loadImages(entries, { size: 32, resize: 'shorter', normalization: imagenet });
  await saveTensors(path.join(temp.dir, 'packed.safetensors'), {
    images: dataset.images,
    labels: dataset.labels,
    extents: dataset.extents!,
  });
  const config = JSON.parse(fs.readFileSync(path.join(temp.dir, 'run.json'), 'utf8'));
  fs.writeFileSync(
    path.join(temp.dir, 'packed.json'),
    JSON.stringify({ ...config, data: { ...config.data, test: 'packed.safetensors' } }),
  );
  const exported = pace([
    ...['export', '--config', 'packed.json', '--adapters', 'run/adapters.safetensors'],
    ...['--merged', '--out', 'packed-merged.safetensors'],
  ]);
  expect([exported.status, exported.stderr]).toEqual([0, '']);
  const packedMerged = path.join(temp.dir, 'packed-merged.safetensors');
  // stored at floor(28 / 0.875) = 32: the benchmarks' crop, with the model's own normalisation (a tensor file's)
  const transform = await readEvalTransform(packedMerged);
  expect(transform).toEqual({ resize: 'center-crop', cropPct: 0.875, interpolation: 'bilinear', ...vitNormalization });
  using model = await createModel({ ...vit28, numClasses: 3 }, { pretrained: packedMerged });
  const server = createInferenceServer(model, { transform, topK: 3 });
  const answers = await served(await listen(server.server), files).finally(() => server.close());
  const evaluation = pace(['eval', '--config', 'packed.json', '--adapters', 'run/adapters.safetensors']);
  expect([evaluation.status, evaluation.stderr]).toEqual([0, '']);
  const loss = -answers.reduce((sum, answer, i) => sum + Math.log(answer.get(String(labels[i]))!), 0) / files.length;
  expect(Math.abs(JSON.parse(evaluation.stdout).loss - loss)).toBeLessThan(1e-5);
});

test("a packed set's stored side is read from its extents alone, however many images it holds", async () => {
  // Bug: the shortest side was taken with Math.min(...sides), which overflows the stack past ~125,000 images: the
  // export then recorded a stretch without a word.
  const count = 130_000;
  const sides = new BigInt64Array(count * 2).map((_, i) => (i % 2 ? 300n : 256n));
  sides[2 * 77_777 + 1] = 240n; // one image narrower than the rest
  using extents = tensor(sides, [count, 2]);
  const file = path.join(temp.dir, 'many-extents.safetensors');
  await saveTensors(file, { extents });
  const preprocessing: Preprocessing = { ...vitNormalization, interpolation: 'bicubic', cropPct: 0.9, imgSize: 224 };
  expect(evaluationTransformOf('many-extents.safetensors', preprocessing, temp.dir)).toEqual({
    resize: 'center-crop',
    cropPct: 224 / 240.5,
    interpolation: 'bilinear',
    ...vitNormalization,
  });
});

test('extents no image has (a side under 1) record no crop made from them: the load is what refuses the file', async () => {
  // Bug (a review): a side of -5 passed as the shortest, and the export recorded a crop fraction of -49.8.
  const preprocessing: Preprocessing = { ...vitNormalization, interpolation: 'bicubic', cropPct: 0.9, imgSize: 224 };
  for (const [label, sides] of [
    ['negative', [-5n, 300n]],
    ['zero', [0n, 300n]],
  ] as const) {
    using extents = tensor(BigInt64Array.from(sides), [1, 2]);
    const file = path.join(temp.dir, `bad-extents-${label}.safetensors`);
    await saveTensors(file, { extents });
    expect([label, evaluationTransformOf(path.basename(file), preprocessing, temp.dir).resize]).toEqual([
      label,
      'stretch',
    ]);
  }
});

function softmaxRows(logits: Float64Array, classes: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < logits.length / classes; i++) {
    const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    rows.push(row.map((v) => Math.exp(v - max) / sum));
  }
  return rows;
}

/** `pace serve` started, its first lines read, one upload answered, then stopped. */
async function serveOnce(
  args: string[],
  file: string,
): Promise<{ stdout: string; stderr: string; answer: Map<string, number> }> {
  const child = spawn(process.execPath, [cli, 'serve', ...args, '--port', '0'], {
    cwd: temp.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    const deadline = Date.now() + 60_000;
    let base = '';
    while (!base && Date.now() < deadline && child.exitCode === null) {
      base = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] ?? '';
      if (!base) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect([base !== '', stderr]).toEqual([true, '']);
    const [answer] = await served(base, [file]);
    child.kill('SIGTERM');
    await exited;
    return { stdout, stderr, answer };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

test('pace serve applies the transform the weights record, says so, and --resize overrides the resize', async () => {
  const spec = JSON.stringify({ ...vit28, numClasses: 3 });
  using model = await createModel({ ...vit28, numClasses: 3 }, { pretrained: merged });
  const recorded = await readEvalTransform(merged);
  const api = async (transform: Parameters<typeof createInferenceServer>[1]) => {
    const server = createInferenceServer(model, { topK: 3, ...transform });
    return (await served(await listen(server.server), [files[2]]).finally(() => server.close()))[0];
  };
  const same = (a: Map<string, number>, b: Map<string, number>) =>
    [...a].every(([label, p]) => Math.abs(p - b.get(label)!) < 1e-6);

  const plain = await serveOnce(['--weights', 'merged.safetensors', '--model', spec], files[2]);
  expect(plain.stdout).toContain(
    'uploads centre-cropped at 0.875 (bilinear), mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]: ' +
      'as the weights record\n',
  );
  expect(same(plain.answer, await api({ transform: recorded }))).toBe(true);

  const stretched = await serveOnce(
    ['--weights', 'merged.safetensors', '--model', spec, '--resize', 'stretch'],
    files[2],
  );
  expect(stretched.stdout).toContain('uploads stretched (bilinear), mean [0.485, 0.456, 0.406]');
  expect(stretched.stdout).toContain('as the weights record, --resize stretch\n');
  expect(same(stretched.answer, await api({ transform: { ...recorded, resize: 'stretch' } }))).toBe(true);
  expect(same(stretched.answer, plain.answer)).toBe(false);

  // timm's crop_mode 'squash' (its CLIP fine-tunes at 384): both sides to floor(size / cropPct), then the centre
  const squashed = await serveOnce(
    ['--weights', 'merged.safetensors', '--model', spec, '--resize', 'squash-crop'],
    files[2],
  );
  expect(squashed.stdout).toContain('uploads squashed and centre-cropped at 0.875 (bilinear), mean [0.485');
  expect(same(squashed.answer, await api({ transform: { ...recorded, resize: 'squash-crop' } }))).toBe(true);
  expect([same(squashed.answer, plain.answer), same(squashed.answer, stretched.answer)]).toEqual([false, false]);

  // Weights that record none (the demo's) get timm's evaluation transform for the model: crop_pct 0.9, bicubic.
  const demo = await serveOnce(
    ['--weights', demoWeights, '--model', JSON.stringify({ ...vit28, numClasses: 10 })],
    files[2],
  );
  expect(demo.stdout).toContain(
    "uploads centre-cropped at 0.9 (bicubic), mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]: timm's evaluation transform for the model\n",
  );

  const bad = pace(['serve', '--weights', 'merged.safetensors', '--model', spec, '--resize', 'squash']);
  expect([bad.status, bad.stderr]).toEqual([
    2,
    expect.stringContaining("--resize must be stretch, center-crop, squash-crop, got 'squash'"),
  ]);
}, 120_000);

test('weights whose recorded transform is damaged are refused by pace serve and readEvalTransform, naming the file', async () => {
  const damaged = path.join(temp.dir, 'damaged.safetensors');
  for (const [value, says] of [
    ['{"resize": "center-crop"', 'is not JSON'],
    [
      '{"resize": "squash", "cropPct": 0.875, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]}',
      'resize',
    ],
    [
      '{"resize": "stretch", "cropPct": 0.875, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 0, 1]}',
      'std.1',
    ],
    // accepted once, then every upload failed (a resize of 28e9 rows) or was answered with null probabilities
    [
      '{"resize": "center-crop", "cropPct": 1e-9, "interpolation": "bicubic", "mean": [0, 0, 0], "std": [1, 1, 1]}',
      'cropPct',
    ],
    [
      '{"resize": "stretch", "cropPct": 0.9, "interpolation": "bicubic", "mean": [1e308, 0, 0], "std": [1, 1, 1]}',
      'mean.0',
    ],
  ]) {
    {
      // Written as another tool would (saveWeights checks a record it is given)
      const { tensors } = await loadTensors(merged);
      await saveTensors(damaged, tensors, { metadata: { [EVAL_TRANSFORM_METADATA_KEY]: value } });
      disposeTensors(tensors);
    }
    expect((await readTensorHeader(damaged)).metadata?.[EVAL_TRANSFORM_METADATA_KEY]).toBe(value);
    await expect(readEvalTransform(damaged)).rejects.toThrow(
      new RegExp(`damaged.safetensors'.*${says.replace('.', '\\.')}`),
    );
    const run = pace(['serve', '--weights', damaged, '--model', JSON.stringify({ ...vit28, numClasses: 3 })]);
    expect([value, run.status === 0, run.stderr]).toEqual([
      value,
      false,
      expect.stringContaining(EVAL_TRANSFORM_METADATA_KEY),
    ]);
  }
});
