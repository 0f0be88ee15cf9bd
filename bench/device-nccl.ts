// On the lent GPU machine (bench/device.sh): the data-parallel path through NCCL with a world of one, one GPU,
// against the same PACE steps without a group. The all-reduce over one rank changes nothing, so the losses and
// the trained adapters must be identical. Rehearse here with PACE_DEVICE=cpu (Gloo on the CPU).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createModel, destroyDistributed, initDistributed, tensor, Trainer } from 'pace-peft';

const onCpu = process.env.PACE_DEVICE === 'cpu';
const device = onCpu ? 'cpu' : 'cuda:0';

async function steps(): Promise<{ losses: number[]; adapters: Buffer }> {
  const model = await createModel('vit_tiny_patch16_224', { numClasses: 10, seed: 1, device });
  model.addAdapters({ type: 'loramul_vptadd', rank: 4 });
  const trainer = new Trainer(model, { pace: { sigma: 1, lambda: 1 }, optimizer: { lr: 1e-3 }, seed: 2 });
  const losses: number[] = [];
  for (let k = 0; k < 3; k++) {
    const images = tensor(
      Float32Array.from({ length: 4 * 3 * 224 * 224 }, (_, i) => Math.sin(0.001 * i + k)),
      [4, 3, 224, 224],
      { device },
    );
    const labels = tensor(BigInt64Array.from([0n, 3n, 5n, 7n]), [4], { device });
    losses.push((await trainer.trainStep(images, labels)).totalLoss);
  }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pace-nccl-')), 'adapters.safetensors');
  await model.saveAdapters(file);
  model.dispose();
  return { losses, adapters: fs.readFileSync(file) };
}

async function main(): Promise<number> {
  const group = await initDistributed({ backend: onCpu ? 'gloo' : 'nccl', rank: 0, worldSize: 1, masterPort: 29555 });
  console.log(`group: ${JSON.stringify(group)}`);
  const inGroup = await steps();
  destroyDistributed();
  const alone = await steps();
  const same =
    JSON.stringify(inGroup.losses) === JSON.stringify(alone.losses) && inGroup.adapters.equals(alone.adapters);
  console.log(`losses in the group ${inGroup.losses.join(', ')}; alone ${alone.losses.join(', ')}`);
  console.log(same ? 'identical: losses and adapter bytes' : 'DIFFERENT');
  return same ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
