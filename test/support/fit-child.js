// A training process for the kill-and-resume test: the parent kills it with SIGKILL part way through.
'use strict';
const { createModel, loadTensors, TensorDataset, Trainer } = require(process.env.PACE_LIB);

async function main() {
  const args = JSON.parse(process.argv[2]);
  const model = await createModel(args.spec, { pretrained: args.base });
  model.addAdapters(args.adapters);
  await model.loadAdapters(args.init);
  const data = (await loadTensors(args.data)).tensors;
  const trainer = new Trainer(model, args.trainer);
  await trainer.fit(new TensorDataset(data.images, data.labels), { ...args.fit, runDir: args.runDir });
  process.stdout.write('finished\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
