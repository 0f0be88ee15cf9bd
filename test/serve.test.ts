import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import sharp from 'sharp';

import {
  createInferenceServer,
  createModel,
  memoryStats,
  prepareImages,
  releaseCachedMemory,
  tensor,
  TensorDataset,
  Trainer,
  type Model,
} from '../lib';
import { PaceDivergedError } from '../lib/errors';
import { Batcher, RECORDED_BATCHES } from '../lib/serve/batcher';
import { topIndices } from '../lib/serve/ranking';
import { makeTempDir, repoRoot } from './support/paths';
import { pillowResize } from './support/pillow-resample';
import { craftSafetensors } from './support/reference-safetensors';
import { listen, postImage, withForward } from './support/serve';

const checkpoint = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const spec = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 } as const;
const labels = Array.from({ length: 10 }, (_, i) => `class-${i}`);

/** Fashion-MNIST test images of four different classes (the model's pretraining data), as grey PNGs. */
async function fashionPngs(): Promise<Buffer[]> {
  const gz = (file: string) => zlib.gunzipSync(fs.readFileSync(path.join('/usr/share/datasets/fashion-mnist', file)));
  const images = gz('t10k-images-idx3-ubyte.gz');
  const classes = gz('t10k-labels-idx1-ubyte.gz');
  const picked: number[] = [];
  for (let i = 0; picked.length < 4; i++) {
    if (!picked.some((j) => classes[8 + j] === classes[8 + i])) picked.push(i);
  }
  return Promise.all(
    picked.map((i) =>
      sharp(images.subarray(16 + i * 784, 16 + (i + 1) * 784), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    ),
  );
}

type Prediction = { label: string; probability: number };

/**
 * What the server should answer for one image, computed here: timm's evaluation transform for the model (its
 * crop_pct 0.9 at 28: Resize(floor(28 / 0.9) = 31, bicubic) in Pillow's arithmetic, then CenterCrop(28) at
 * round(1.5) = 2), one forward of the model, then a float64 softmax and ranking.
 */
async function expectedTopK(model: Model, png: Buffer, k: number): Promise<Prediction[]> {
  const grey = await sharp(png).extractChannel(0).raw().toBuffer(); // the grey PNGs' one level, read as RGB
  expect(grey.length).toBe(28 * 28);
  const resized = pillowResize(grey, 28, 28, 1, 31, 31, 'bicubic');
  const pixels = Buffer.alloc(28 * 28 * 3);
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) pixels.fill(resized[(y + 2) * 31 + x + 2], (y * 28 + x) * 3, (y * 28 + x + 1) * 3);
  }
  using images = tensor(pixels, [1, 28, 28, 3], { dtype: 'uint8' });
  using input = await prepareImages(images, { size: 28, ...model.preprocessing });
  using logitsTensor = await model.forward(input);
  const logits = Array.from(logitsTensor.toFloat64Array());
  const max = Math.max(...logits);
  const sum = logits.reduce((s, v) => s + Math.exp(v - max), 0);
  return logits
    .map((v, i) => ({ label: labels[i], probability: Math.exp(v - max) / sum }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}

const predict = postImage;

test("a long-running server keeps only the latest batches' sizes", async () => {
  // Bug (review): every batch's size was kept for the server's life, one more entry per batch, never trimmed.
  using model = await createModel(spec, { seed: 1 });
  const batcher = new Batcher({
    model,
    normalization: model.preprocessing,
    maxBatch: 2,
    batchWindowMs: 600_000, // a batch starts once full, or on drain
    maxPending: 8,
    retryAfterSeconds: 1,
    idleReleaseMs: 0,
    recordedBatches: 3,
  });
  const image = Buffer.alloc(28 * 28 * 3, 100);
  for (const size of [2, 2, 2, 1]) {
    const results = Array.from({ length: size }, () => batcher.submit(image).result);
    if (size < 2) await batcher.drain(); // (after which every request runs at once)
    await Promise.all(results);
  }
  expect(batcher.batches).toEqual([2, 2, 1]); // the oldest dropped
  expect(RECORDED_BATCHES).toBe(10_000);
});

test('concurrent requests fill one batch; each prediction is the softmax of model.forward on its decoded image', async () => {
  // Bugs: requests not batched, rows of a batch answered to the wrong request, another decoding or normalisation
  // than the model's, a wrong softmax or ranking: labels or probabilities differ from those computed here.
  using model = await createModel(spec, { pretrained: checkpoint });
  const pngs = await fashionPngs();
  const expected: Prediction[][] = [];
  for (const png of pngs) expected.push(await expectedTopK(model, png, 3));
  expect(new Set(expected.map((e) => e[0].label)).size).toBe(4); // four different answers, so a mix-up shows

  // The window is far longer than any test: the batch starts because it is full (maxBatch = 4 requests),
  // whatever the speed of the machine.
  const { server, batches, close } = createInferenceServer(model, {
    labels,
    topK: 3,
    maxBodyBytes: 20000,
    maxBatch: 4,
    batchWindowMs: 600_000,
    timeoutMs: 900_000, // (the window must be the shorter)
  });
  const base = await listen(server);
  try {
    const responses = await Promise.all(pngs.map((png) => predict(base, png)));
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(batches).toEqual([4]);
    for (const [i, response] of responses.entries()) {
      const { predictions } = (await response.json()) as { predictions: Prediction[] };
      expect(predictions.map((p) => p.label)).toEqual(expected[i].map((p) => p.label));
      // float32 logits and softmax in the server against float64 here: about 5e-8 apart on this machine.
      predictions.forEach((p, j) => expect(Math.abs(p.probability - expected[i][j].probability)).toBeLessThan(2e-6));
    }

    expect(await (await fetch(`${base}/health`)).json()).toEqual({
      status: 'ok',
      queued: 0,
      decoding: { small: { active: 0, waiting: 0 }, large: { active: 0, waiting: 0 } },
    });
    expect((await predict(base, pngs[0], 'text/plain')).status).toBe(415);
    expect((await predict(base, Buffer.from('not an image'))).status).toBe(400);
    const big = await sharp({ create: { width: 300, height: 300, channels: 3, background: { r: 1, g: 2, b: 3 } } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    expect((await predict(base, big)).status).toBe(413);
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
    expect((await fetch(`${base}/predict`)).status).toBe(405);
  } finally {
    await close(); // also when an expectation fails, so that no server outlives the test
  }
  expect(server.listening).toBe(false);
});

test('the headers timeout defaults to 10 s, or to a shorter request timeout', async () => {
  // Bug: a request timeout under 10 s was refused, the default headers timeout (10 s) exceeding it.
  using model = await createModel(spec, { pretrained: checkpoint });
  for (const [options, headers] of [
    [{}, 10_000],
    [{ requestTimeoutMs: 5000 }, 5000],
    [{ requestTimeoutMs: 5000, headersTimeoutMs: 2000 }, 2000],
  ] as const) {
    const { server, close } = createInferenceServer(model, options);
    expect([options, server.headersTimeout, server.requestTimeout]).toEqual([
      options,
      headers,
      'requestTimeoutMs' in options ? options.requestTimeoutMs : 30_000,
    ]);
    await close();
  }
});

test('a transparent PNG is answered as its colours say, alpha dropped as Pillow drops it', async () => {
  // Bug: libvips premultiplied alpha while resizing, so the transparent half of the image was black to the model.
  using model = await createModel(spec, { pretrained: checkpoint });
  const [width, height] = [40, 40];
  const rgb = Buffer.alloc(width * height * 3);
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const colour = [(i * 7) % 256, (i * 13) % 256, (i * 29) % 256];
    rgb.set(colour, i * 3);
    rgba.set([...colour, i < (width * height) / 2 ? 0 : 255], i * 4);
  }
  const opaque = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
  const transparent = await sharp(rgba, { raw: { width, height, channels: 4 } })
    .png()
    .toBuffer();
  const { server, close } = createInferenceServer(model, { labels, topK: 10 });
  const base = await listen(server);
  try {
    const answers = [];
    for (const png of [opaque, transparent]) {
      const response = await predict(base, png);
      expect(response.status).toBe(200);
      answers.push(((await response.json()) as { predictions: Prediction[] }).predictions);
    }
    expect(answers[1]).toEqual(answers[0]);
  } finally {
    await close();
  }
});

test('a prediction that cannot finish within timeoutMs is answered 504, and the server serves on', async () => {
  // Bug: no timeout (the request would wait for the held model; the safety release below then makes it a 200).
  using model = await createModel(spec, { pretrained: checkpoint });
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  const safety = setTimeout(release, 10_000);
  // The model's forward waits until the test releases it: the first request cannot finish in time.
  const gated = withForward(model, async (input) => {
    await held;
    return model.forward(input);
  });
  // 2 s: the gated request times out, and the one after it, which must be answered, has ample time on a slow machine.
  const { server, close } = createInferenceServer(gated, { timeoutMs: 2000, maxBatch: 1, batchWindowMs: 0 });
  const base = await listen(server);
  try {
    const [png] = await fashionPngs();
    const timedOut = await predict(base, png);
    release();
    clearTimeout(safety);
    expect(timedOut.status).toBe(504);
    expect(await timedOut.json()).toEqual({ error: 'the prediction timed out' });
    expect((await predict(base, png)).status).toBe(200);
  } finally {
    release();
    clearTimeout(safety);
    await close();
  }
});

test("the model's own labels are read at each answer; a model in training mode is not served", async () => {
  // Bugs (review): the names were a snapshot taken with the server, so weights or adapters loaded since were
  // answered under the old head's names; a model in training mode (stochastic depth on) was served as it was.
  using model = await createModel(spec, { pretrained: checkpoint });
  model.classNames = labels;
  const errors: unknown[] = [];
  const { server, close } = createInferenceServer(model, {
    topK: 10,
    batchWindowMs: 0,
    onError: (e) => errors.push(e),
  });
  const base = await listen(server);
  try {
    const [png] = await fashionPngs();
    const answer = async () => ((await (await predict(base, png)).json()) as { predictions: Prediction[] }).predictions;
    const before = await answer();
    expect(before.map((p) => p.label).sort()).toEqual([...labels].sort());
    model.classNames = labels.map((label) => `renamed ${label}`);
    const after = await answer();
    expect(after.map((p) => p.label)).toEqual(before.map((p) => `renamed ${p.label}`));
    expect(after.map((p) => p.probability)).toEqual(before.map((p) => p.probability));

    model.train();
    const response = await predict(base, png);
    expect(response.status).toBe(500);
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/the model is in training mode .*call model\.eval\(\)/);
    model.eval();
    expect((await predict(base, png)).status).toBe(200);
    model.train();
    expect(() => createInferenceServer(model)).toThrow(/training mode .*call model\.eval\(\) before serving it/);
    model.eval();
  } finally {
    await close();
  }
});

test('the top k are the k most probable classes, largest first and the lower index first among equals', async () => {
  // (Found one pass, not by sorting every class: checked here against a stable sort, both ways the server takes.)
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let trial = 0; trial < 200; trial++) {
    const values = Float32Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 12) / 4);
    const k = 1 + Math.floor(random() * 90);
    const stable = Array.from(values.keys())
      .sort((a, b) => values[b] - values[a])
      .slice(0, k);
    expect(topIndices(values, k)).toEqual(stable);
  }
});

test('non-finite logits are a 500 told to onError, not probabilities; a disposed model is a 503 and /health says so', async () => {
  // Bugs (review): NaN logits were answered 200 with "probability": null in an arbitrary order; a disposed model's
  // server kept answering /health 200 'ok' while every prediction failed with a stack trace on stderr.
  const dir = makeTempDir('serve-non-finite');
  try {
    using model = await createModel(spec, { pretrained: checkpoint });
    // A head whose products overflow float32 (every weight finite, so loadWeights takes it).
    const weight = Buffer.from(new Float32Array(10 * 64).fill(3e38).buffer);
    const bias = Buffer.from(new Float32Array(10).buffer);
    const header = {
      'head.weight': { dtype: 'F32', shape: [10, 64], data_offsets: [0, weight.length] },
      'head.bias': { dtype: 'F32', shape: [10], data_offsets: [weight.length, weight.length + bias.length] },
    };
    const file = path.join(dir.dir, 'overflowing-head.safetensors');
    fs.writeFileSync(file, craftSafetensors(header, Buffer.concat([weight, bias])));
    await model.loadWeights(file, { strict: false });
    const errors: unknown[] = [];
    const { server, close } = createInferenceServer(model, { batchWindowMs: 0, onError: (e) => errors.push(e) });
    const base = await listen(server);
    try {
      const [png] = await fashionPngs();
      const response = await predict(base, png);
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'the server failed to predict; its log says why' });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(PaceDivergedError);
      expect(String(errors[0])).toContain("the model's logits for a batch of 1 are not finite");

      model.dispose();
      const health = await fetch(`${base}/health`);
      expect(health.status).toBe(503);
      expect(((await health.json()) as { status: string }).status).toBe('model disposed');
      const refused = await predict(base, png);
      expect(refused.status).toBe(503);
      expect(await refused.json()).toEqual({ error: 'the model was disposed: this server cannot predict any more' });
      expect(errors).toHaveLength(1);
    } finally {
      await close();
    }
  } finally {
    dir.cleanup();
  }
});

test('while a fit trains the served model, requests get 503 with Retry-After, and 200 once it has resolved', async () => {
  // Bug: 500, with the library's advice to call forward from the fit's callbacks as the body.
  using model = await createModel(spec, { pretrained: checkpoint });
  model.addAdapters({ rank: 2 });
  const { server, close } = createInferenceServer(model, { retryAfterSeconds: 3, batchWindowMs: 0 });
  const base = await listen(server);
  try {
    const [png] = await fashionPngs();
    const images = tensor(new Float32Array(16 * 3 * 28 * 28), [16, 3, 28, 28]);
    const data = new TensorDataset(images, tensor(new BigInt64Array(16), [16], { dtype: 'int64' }));
    let during: Response | undefined;
    await new Trainer(model, { optimizer: { lr: 1e-3 } }).fit(data, {
      epochs: 1,
      batchSize: 8,
      progress: false,
      callbacks: [{ onEpochBegin: async () => void (during = await predict(base, png)) }],
    });
    expect(during?.status).toBe(503);
    expect(during?.headers.get('retry-after')).toBe('3');
    expect(await during?.json()).toEqual({ error: 'the model is being trained by a fit in this process; retry later' });
    expect((await predict(base, png)).status).toBe(200);
  } finally {
    await close();
  }
});

test("idle for idleReleaseMs, the server returns the forwards' cached CPU memory to the system", async () => {
  // Bug: forwards of varying batch sizes kept their largest activations in the CPU block cache for the process's
  // life (579 MiB on a 5.5 M-parameter ViT at 224), as only a fit's end released them.
  using model = await createModel({ ...spec, imgSize: 224, patchSize: 16 }, { seed: 1 });
  // Idle for 2 s: long enough that answering the 32 requests (after the last forward) never reaches it on a
  // loaded machine, so the cache is still there to see.
  const { server, close } = createInferenceServer(model, { idleReleaseMs: 2_000, batchWindowMs: 50, maxBatch: 32 });
  const base = await listen(server);
  try {
    const [png] = await fashionPngs();
    releaseCachedMemory();
    for (const batch of [1, 8, 32]) {
      const answers = await Promise.all(Array.from({ length: batch }, () => predict(base, png)));
      expect(answers.map((answer) => answer.status)).toEqual(Array(batch).fill(200));
    }
    expect(memoryStats().cpuCacheBytes).toBeGreaterThan(0); // what the forwards freed, kept for the next
    for (let waited = 0; memoryStats().cpuCacheBytes > 0 && waited < 100; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(memoryStats().cpuCacheBytes).toBe(0);
  } finally {
    await close();
  }
});

test('pace serve on SIGTERM answers the request it holds, stops listening and exits 0', async () => {
  // Bugs: no SIGTERM handler (killed: the held request fails, no exit code 0); queued requests left waiting for
  // the batch window (here ten minutes) before the shutdown finishes; a process that does not exit after closing.
  // And: a --weights file named as a pretrained model is (was fetched from the Hub instead; offline: refused).
  const folder = makeTempDir('serve-weights');
  fs.copyFileSync(checkpoint, path.join(folder.dir, 'vit_tiny_patch16_224'));
  const child = spawn(
    process.execPath,
    [
      path.join(repoRoot, 'dist', 'cli.js'),
      'serve',
      ...['--weights', 'vit_tiny_patch16_224', '--model', JSON.stringify(spec), '--classes', '10'],
      ...['--port', '0', '--max-batch', '8', '--batch-window-ms', '600000', '--timeout-ms', '900000'],
    ],
    {
      cwd: folder.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HF_HUB_OFFLINE: '1', HF_HUB_CACHE: path.join(folder.dir, 'empty-cache') },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const within = async <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms; stderr: ${stderr}`)), ms);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  };
  try {
    const deadline = Date.now() + 60_000;
    let base = '';
    while (!base && Date.now() < deadline && child.exitCode === null) {
      base = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] ?? '';
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(base).not.toBe('');
    const [png] = await fashionPngs();
    const held = predict(base, png);
    // The request waits in the batcher (a ten-minute window, a batch of 8): it is in flight when SIGTERM comes.
    let queued = 0;
    while (queued === 0 && Date.now() < deadline) {
      queued = ((await (await fetch(`${base}/health`)).json()) as { queued: number }).queued;
      if (queued === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(queued).toBe(1);
    child.kill('SIGTERM');
    const response = await within(held, 20_000, 'the held request');
    expect(response.status).toBe(200);
    expect(((await response.json()) as { predictions: Prediction[] }).predictions).toHaveLength(5);
    expect(await within(exited, 20_000, 'the exit')).toEqual({ code: 0, signal: null });
    await expect(fetch(`${base}/health`)).rejects.toThrow();
    expect(stderr).toBe('');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    folder.cleanup();
  }
});
