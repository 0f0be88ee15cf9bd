import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { repoRoot } from './support/paths';

// The addon keeps its state per JavaScript environment, so it loads and works in several at once.
test('the addon works in two worker threads at the same time', async () => {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { tensor, measureGemm } = require(workerData.lib);
    (async () => {
      const t = tensor(new Float32Array([1, 2, 3]).map((v) => v * workerData.scale));
      await measureGemm({ size: 64, seconds: 0.2 });
      parentPort.postMessage(Array.from(t.toFloat32Array()));
      t.dispose();
    })();
  `;
  const run = (scale: number) =>
    new Promise<number[]>((resolve, reject) => {
      const worker = new Worker(source, { eval: true, workerData: { lib: path.join(repoRoot, 'dist'), scale } });
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  const [a, b] = await Promise.all([run(2), run(10)]);
  expect(a).toEqual([2, 4, 6]);
  expect(b).toEqual([10, 20, 30]);
});
