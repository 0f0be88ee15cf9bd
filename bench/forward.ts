// Times an eval-mode forward of a named backbone (default ViT-B/16 at 224, batch 2) on this machine.
// Not part of `npm test`. Usage: npm run bench:forward -- [model] [batch] [repeats]
import { createModel, doctor, tensor } from 'pace-peft';

async function main(): Promise<void> {
  const [name = 'vit_base_patch16_224', batchText = '2', repeatsText = '5'] = process.argv.slice(2);
  const batch = Number(batchText);
  const repeats = Number(repeatsText);
  using model = await createModel(name);
  const size = model.spec.imgSize;
  const values = new Float32Array(batch * 3 * size * size).map(() => Math.random() * 2 - 1);
  using images = tensor(values, [batch, 3, size, size]);

  const times: number[] = [];
  for (let i = 0; i <= repeats; i++) {
    const start = performance.now();
    using logits = await model.forward(images);
    if (i > 0) times.push(performance.now() - start); // the first run warms up allocators and thread pools
    if (logits.shape[0] !== batch) throw new Error('unexpected output shape');
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const report = doctor();
  console.log(
    JSON.stringify({
      model: name,
      batch,
      repeats,
      medianMs: Number(median.toFixed(1)),
      minMs: Number(times[0].toFixed(1)),
      imagesPerSecond: Number(((batch * 1000) / median).toFixed(2)),
      parameters: model.numParameters(),
      torch: report.torchVersion,
      blas: report.blas.kind,
      threads: report.threads.intraOp,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
