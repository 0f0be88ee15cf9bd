// Reproduces the demo's committed backbone: a small ViT trained from scratch on Debian's Fashion-MNIST
// (apt-get install dataset-fashion-mnist), saved as a timm-layout safetensors file.
// Usage: tsx scripts/pretrain-demo-backbone.ts [--epochs N] [--seed S] [--out FILE]
import { parseArgs } from 'node:util';

import { createModel, loadIdxDataset, Trainer } from 'pace-peft';

import { demoCheckpoint, demoNormalization, demoSpec } from '../examples/demo-model';

const root = '/usr/share/datasets/fashion-mnist';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string', default: '6' },
      seed: { type: 'string', default: '0' },
      out: { type: 'string', default: demoCheckpoint },
    },
  });
  const epochs = Number(values.epochs);
  const seed = Number(values.seed);
  const load = (split: string) =>
    loadIdxDataset(`${root}/${split}-images-idx3-ubyte.gz`, `${root}/${split}-labels-idx1-ubyte.gz`, {
      normalization: demoNormalization,
      numClasses: 10,
    });
  const [train, test] = [load('train'), load('t10k')];

  using model = await createModel(demoSpec, { seed });
  model.addAdapters({ type: 'full' });
  const trainer = new Trainer(model, { optimizer: { lr: 2e-3, weightDecay: 0.05 }, seed });
  const started = performance.now();
  const history = await trainer.fit(train, {
    epochs,
    batchSize: 128,
    schedule: { warmupEpochs: 1, minLr: 1e-5, warmupLr: 1e-5 },
    scheduleStepping: 'step',
    evalEvery: epochs,
    validation: test,
    callbacks: [
      {
        onEpochEnd: (epoch, logs) =>
          console.log(
            `epoch ${epoch}: loss ${logs.loss.toFixed(4)} train acc ${logs.acc.toFixed(4)} ${logs.imagesPerSecond.toFixed(0)} img/s`,
          ),
      },
    ],
  });
  const accuracy = history.epochs[history.epochs.length - 1].val_acc ?? Number.NaN;
  const minutes = (performance.now() - started) / 60000;
  console.log(
    `Fashion-MNIST test accuracy ${(100 * accuracy).toFixed(2)}% after ${epochs} epochs (${minutes.toFixed(1)} min)`,
  );
  await model.saveWeights(values.out, {
    metadata: {
      spec: JSON.stringify(demoSpec),
      pretrained_on: 'Fashion-MNIST (Debian dataset-fashion-mnist), 60,000 training images',
      test_accuracy: accuracy.toFixed(4),
      epochs: String(epochs),
      seed: String(seed),
      command: `tsx scripts/pretrain-demo-backbone.ts --epochs ${epochs} --seed ${seed}`,
    },
  });
  console.log(`saved ${values.out}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
