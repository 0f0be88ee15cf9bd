// Load test of examples/serve.ts on loopback (not part of npm test): autocannon posts a PNG for a bounded time
// and this prints requests/s, p50/p99 latency, errors and resident memory before and after.
// Usage: npm run bench:serve -- [seconds] [connections]
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import autocannon from 'autocannon';
import { createModel } from 'pace-peft';
import sharp from 'sharp';

import { createInferenceServer } from '../examples/serve';

async function main(): Promise<void> {
  const [seconds = 10, connections = 16] = process.argv.slice(2).map(Number);
  const checkpoint = path.join(__dirname, '..', 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
  using model = await createModel(
    { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 },
    { pretrained: checkpoint },
  );
  const { server, batches, close } = createInferenceServer({ model, maxBatch: 32, batchWindowMs: 5 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/predict`;
  const body = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 120, b: 200 } } })
    .png()
    .toBuffer();
  const rssBefore = process.memoryUsage().rss;
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
    connections,
    duration: seconds,
  });
  const rssAfter = process.memoryUsage().rss;
  await close();
  const meanBatch = batches.reduce((a, b) => a + b, 0) / Math.max(1, batches.length);
  console.log(
    JSON.stringify(
      {
        seconds,
        connections,
        requestsPerSecond: result.requests.average,
        latencyP50Ms: result.latency.p50,
        latencyP99Ms: result.latency.p99,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        meanBatch: Number(meanBatch.toFixed(2)),
        rssBeforeMiB: Number((rssBefore / 2 ** 20).toFixed(1)),
        rssAfterMiB: Number((rssAfter / 2 ** 20).toFixed(1)),
      },
      null,
      2,
    ),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
