// One rank of the data-parallel step test (test/distributed.test.ts), started with torchrun's environment
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Each step it takes its share of the global batch and of the
// replayed noise, steps, and writes its adapters after the step: `<out>/rank<r>-step<k>.safetensors`, and its
// step results as JSON lines on stdout.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createModel, initDistributed, loadTensors, tensor, TensorDataset, Trainer } = require(process.env.PACE_LIB);

/** Rows [from, to) of a float32 or int64 tensor along its first dimension, and of each block of `blocks` copies. */
function rows(t, from, to, blocks = 1) {
  const data = t.data();
  const per = t.size / t.shape[0];
  const length = t.shape[0] / blocks;
  const parts = [];
  for (let b = 0; b < blocks; b++) parts.push(data.subarray((b * length + from) * per, (b * length + to) * per));
  const out = new data.constructor(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return tensor(out, [blocks * (to - from), ...t.shape.slice(1)]);
}

async function main() {
  const args = JSON.parse(process.argv[2]);
  const group = await initDistributed({ backend: 'gloo' });
  const model = await createModel(args.spec, { pretrained: args.base });
  model.addAdapters(args.adapters);
  await model.loadAdapters(args.init);
  const trainer = new Trainer(model, args.trainer);
  const share = args.batch / group.worldSize;
  const from = group.rank * share;
  for (let k = 0; k < args.steps; k++) {
    const step = (await loadTensors(path.join(args.dir, `step${k}.safetensors`))).tensors;
    const noise = {};
    for (const [name, value] of Object.entries(step)) {
      // Each noisy linear's ε covers the copies of the batch ([copies·B, ...]): this rank's rows of each copy.
      if (name.startsWith('noise.')) noise[name.slice('noise.'.length)] = rows(value, from, from + share, args.copies);
    }
    const result = await trainer.trainStep(
      rows(step.images, from, from + share),
      rows(step.targets, from, from + share),
      {
        noise,
        indices: rows(step.indices, from, from + share),
        diagnostics: true,
      },
    );
    await model.saveAdapters(path.join(args.dir, `rank${group.rank}-step${k}.safetensors`));
    fs.writeSync(1, `${JSON.stringify(result)}\n`);
  }
  // Evaluation shards the set across the ranks (an odd size, so the shards differ) and sums the counts.
  const evaluation = (await loadTensors(args.evaluation)).tensors;
  const report = await trainer.evaluate(new TensorDataset(evaluation.images, evaluation.labels), { batchSize: 4 });
  fs.writeSync(1, `${JSON.stringify({ evaluation: report })}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.code ?? ''} ${error.stack}\n`);
  process.exit(1);
});
