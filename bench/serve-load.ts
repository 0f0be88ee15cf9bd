// Load test of the inference server (createInferenceServer, what `pace serve` runs) on loopback, not part of npm
// test: autocannon posts an image for a bounded time, and this prints requests/s, p50/p99 latency, errors, and
// resident memory before the burst, at its peak and after `settle` seconds of quiet (sampled every second).
// Usage: npm run bench:serve -- [seconds=10] [connections=16] [image=small|large] [settle=60] [decode=exact|fast]
//   small: a 64×64 PNG; large: a 4000×3000 JPEG of noise (about 7.9 MB, 12 MP: the large decode lane).
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import autocannon from 'autocannon';
import { createInferenceServer, createModel } from 'pace-peft';
import sharp from 'sharp';

async function main(): Promise<void> {
  sharp.cache(false); // as pace serve does: uploads are never decoded twice
  const [secondsArg, connectionsArg, image = 'small', settleArg, decode = 'exact'] = process.argv.slice(2);
  if (decode !== 'exact' && decode !== 'fast') throw new Error(`decode must be exact or fast, got '${decode}'`);
  const [seconds, connections, settle] = [
    Number(secondsArg ?? 10),
    Number(connectionsArg ?? 16),
    Number(settleArg ?? 60),
  ];
  const checkpoint = path.join(__dirname, '..', 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
  using model = await createModel(
    { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 },
    { pretrained: checkpoint },
  );
  const { server, batches, close } = createInferenceServer(model, { maxBatch: 32, batchWindowMs: 5, decode });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/predict`;
  const large = image === 'large';
  const body = large
    ? await sharp({
        create: {
          width: 4000,
          height: 3000,
          channels: 3,
          background: { r: 0, g: 0, b: 0 },
          noise: { type: 'gaussian', mean: 128, sigma: 40 },
        },
      })
        .jpeg({ quality: 90 })
        .toBuffer()
    : await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 120, b: 200 } } })
        .png()
        .toBuffer();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': large ? 'image/jpeg' : 'image/png' },
    body,
    connections,
    duration: seconds,
  });
  clearInterval(sampler);
  const rssAfterBurst = process.memoryUsage().rss;
  let rssSettled = rssAfterBurst;
  for (let s = 0; s < settle; s++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    rssSettled = process.memoryUsage().rss;
  }
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
        image,
        decode,
        bodyBytes: body.length,
        status2xx: result['2xx'],
        rssBeforeMiB: Number((rssBefore / 2 ** 20).toFixed(1)),
        rssPeakMiB: Number((Math.max(rssPeak, rssAfterBurst) / 2 ** 20).toFixed(1)),
        rssAfterBurstMiB: Number((rssAfterBurst / 2 ** 20).toFixed(1)),
        [`rssAfter${settle}sMiB`]: Number((rssSettled / 2 ** 20).toFixed(1)),
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
