import type { AddressInfo } from 'node:net';
import path from 'node:path';

import { createModel } from 'pace-peft';
import sharp from 'sharp';

import { createInferenceServer } from '../examples/serve';
import { repoRoot } from './support/paths';

// The example imports 'pace-peft' (the built package), so the test creates its model from the same module.
const checkpoint = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const spec = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 } as const;

test('the inference server predicts, batches concurrent requests, validates input and shuts down cleanly', async () => {
  using model = await createModel(spec, { pretrained: checkpoint });
  const labels = Array.from({ length: 10 }, (_, i) => `class-${i}`);
  const { server, batches, close } = createInferenceServer({
    model,
    labels,
    topK: 3,
    maxBodyBytes: 20000,
    batchWindowMs: 20,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 200, g: 200, b: 200 } } })
    .png()
    .toBuffer();
  const predict = (body: Buffer, type = 'image/png') =>
    fetch(`${base}/predict`, { method: 'POST', headers: { 'content-type': type }, body });

  expect((await fetch(`${base}/health`)).status).toBe(200);
  const single = await predict(png);
  expect(single.status).toBe(200);
  const { predictions } = (await single.json()) as { predictions: { label: string; probability: number }[] };
  expect(predictions).toHaveLength(3);
  expect(predictions[0].label).toMatch(/^class-\d$/);
  expect(predictions[0].probability).toBeGreaterThanOrEqual(predictions[1].probability);
  expect(predictions.reduce((sum, p) => sum + p.probability, 0)).toBeLessThanOrEqual(1.000001);

  const concurrent = await Promise.all(Array.from({ length: 8 }, () => predict(png)));
  expect(concurrent.map((r) => r.status)).toEqual(new Array(8).fill(200));
  expect(Math.max(...batches)).toBeGreaterThan(1); // requests were served together

  expect((await predict(png, 'text/plain')).status).toBe(415);
  expect((await predict(Buffer.from('not an image'))).status).toBe(400);
  const big = await sharp({ create: { width: 300, height: 300, channels: 3, background: { r: 1, g: 2, b: 3 } } })
    .png({ compressionLevel: 0 })
    .toBuffer();
  expect((await predict(big)).status).toBe(413);
  expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  expect((await fetch(`${base}/predict`)).status).toBe(405);
  await close();
  expect(server.listening).toBe(false);
});
