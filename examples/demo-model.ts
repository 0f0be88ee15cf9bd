// The small ViT of the demo: pretrained on Fashion-MNIST by scripts/pretrain-demo-backbone.ts, then adapted
// few-shot to handwritten digits by examples/demo.ts.
import path from 'node:path';

import type { ModelSpecInput } from 'pace-peft';

export const demoSpec: ModelSpecInput = {
  family: 'vit',
  imgSize: 28,
  patchSize: 7,
  embedDim: 64,
  depth: 4,
  numHeads: 4,
  numClasses: 10,
};

/** ViT's normalisation (mean and std 0.5), as the model's `preprocessing` gives it. */
export const demoNormalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

export const demoCheckpoint = path.join(__dirname, 'assets', 'vit-demo-fashion-mnist.safetensors');
