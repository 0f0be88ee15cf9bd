// A training process for the kill-and-resume tests: the parent kills it with SIGKILL part way through.
// It reports its progress on stdout, one line per event, written synchronously so that a line is out before
// the training goes on: `step <iteration>` after every step, `epoch <epoch>` after each epoch's checkpoint.
// With `stopAt` ({ at: 'step' | 'epoch', count }), it stops itself (SIGSTOP) right after its count-th such line,
// so that the parent's kill lands there however long the parent takes to read the line.
'use strict';
const fs = require('node:fs');
const { createModel, loadTensors, TensorDataset, Trainer } = require(process.env.PACE_LIB);

const args = JSON.parse(process.argv[2]);
const counts = { step: 0, epoch: 0 };
const report = (line) => {
  fs.writeSync(1, `${line}\n`);
  const [event] = line.split(' ');
  if (args.stopAt && event === args.stopAt.at && ++counts[event] === args.stopAt.count) {
    process.kill(process.pid, 'SIGSTOP');
  }
};

async function main() {
  const model = await createModel(args.spec, { pretrained: args.base });
  model.addAdapters(args.adapters);
  await model.loadAdapters(args.init);
  const data = (await loadTensors(args.data)).tensors;
  const trainer = new Trainer(model, args.trainer);
  const callbacks = [
    {
      onBatchEnd: () => report(`step ${trainer.iteration}`),
      onEpochEnd: (epoch) => report(`epoch ${epoch}`),
    },
  ];
  await trainer.fit(new TensorDataset(data.images, data.labels, args.dataset ?? {}), {
    ...args.fit,
    ...(args.fit.resume === undefined && { runDir: args.runDir }), // a resume continues in its own folder
    callbacks,
  });
  report('finished');
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
