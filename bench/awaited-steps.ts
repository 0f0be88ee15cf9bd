// Awaited calls one after another, as a training loop or a server makes them: each call's time and the process's
// thread count after it (a thread that computes keeps an OpenMP team; see native/addon/compute_threads.h).
// Not part of `npm test`. Usage: npx tsx bench/awaited-steps.ts [step|eval] [calls] [model]
// (UV_THREADPOOL_SIZE=1 in the environment gives libuv one thread, for comparison).
import fs from 'node:fs';

import { createModel, tensor, Trainer } from 'pace-peft';

const processThreads = () => Number(/^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1]);

async function main(): Promise<void> {
  const [mode = 'step', callsText = '10', name = 'vit_small_patch16_224'] = process.argv.slice(2);
  if (mode !== 'step' && mode !== 'eval') throw new Error(`mode must be step or eval, got ${mode}`);
  const calls = Number(callsText);
  const batch = 8;
  using model = await createModel(name, { numClasses: 100, dropPathRate: 0.1, seed: 1 });
  model.addAdapters({ type: 'loramul_vptadd', rank: 10 });
  const trainer = new Trainer(model, { optimizer: { lr: 1e-3 }, seed: 1, precision: 'bf16' });
  const size = model.spec.imgSize;
  using images = tensor(
    Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(i)),
    [batch, 3, size, size],
  );
  using targets = tensor(BigInt64Array.from({ length: batch }, (_, i) => BigInt(i)));
  const milliseconds: number[] = [];
  const threads = [processThreads()];
  for (let i = 0; i < calls; i++) {
    const start = performance.now();
    if (mode === 'step') {
      await trainer.trainStep(images, targets);
    } else {
      using logits = await model.forward(images, { precision: 'bf16' });
      if (logits.shape[0] !== batch) throw new Error('unexpected output shape');
    }
    milliseconds.push(Math.round(performance.now() - start));
    threads.push(processThreads());
  }
  const steady = milliseconds.slice(1).sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      mode,
      model: name,
      libuvThreads: process.env.UV_THREADPOOL_SIZE ?? 'default',
      medianMs: steady[Math.floor(steady.length / 2)],
      milliseconds,
      threads,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
