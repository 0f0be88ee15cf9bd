// Device check (bench/device.sh): the PACE parity fixtures replayed on CUDA. fp32 (TF32 off) against the
// reference's numbers: eval logits and losses within 1e-4, gradients within 1e-3 (max |ours − ref| / max |ref|,
// the fixtures' measure); bf16 losses within 2 % of fp32. Prints one line per check; exits 1 if any fails.
import {
  createModel,
  disposeTensors,
  loadTensors,
  Trainer,
  type Model,
  type Tensor,
  type TensorRecord,
} from 'pace-peft';

import { maxRelativeError } from '../test/support/compare';
import { fixture, fixtureAdapterType, fixtureIndex, fixtureSpec } from '../test/support/fixtures';

const device = process.env.PACE_DEVICE ?? 'cuda';
const index = fixtureIndex;

const relativeError = (ours: Tensor, reference: Tensor) =>
  ours.size === reference.size
    ? maxRelativeError(ours.to('cpu').toFloat32Array(), reference.toFloat32Array())
    : Infinity;
const relative = (ours: number, ref: number) => Math.abs(ours - ref) / (Math.abs(ref) + 1e-6);

let failures = 0;
function report(what: string, value: number, limit: number): void {
  const ok = Number.isFinite(value) && value <= limit;
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${value.toExponential(2)} (limit ${limit.toExponential(0)})`);
}

async function adapted(name: string): Promise<Model> {
  const model = await createModel(fixtureSpec(name), { pretrained: fixture(`${name}.base.safetensors`) });
  model.addAdapters({ type: fixtureAdapterType(name), rank: index[name].rank });
  await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
  return model.to(device);
}

function prefixed(io: TensorRecord, prefix: string): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(io)
      .filter(([key]) => key.startsWith(prefix))
      .map(([key, value]) => [key.slice(prefix.length), value]),
  );
}

async function replay(name: string, io: TensorRecord, precision: 'fp32' | 'bf16') {
  const fx = index[name];
  using model = await adapted(name);
  const trainer = new Trainer(model, {
    optimizer: { lr: fx.adamw.lr, weightDecay: fx.adamw.weight_decay },
    pace: { sigma: fx.sigma, lambda: fx.lambda, blockStart: fx.block_start },
    precision,
  });
  const step = await trainer.trainStep(io.input, io.target, { noise: prefixed(io, 'noise.') });
  const gradients = model.gradients();
  return { step, gradients };
}

async function main(): Promise<void> {
  const names = Object.keys(index).filter((name) => index[name].kind === 'pace');
  for (const name of names) {
    const io = (await loadTensors(fixture(`${name}.io.safetensors`))).tensors;
    {
      using model = await adapted(name);
      model.eval();
      using logits = await model.forward(io.input.to(device));
      report(`${name} ${device} eval logits`, relativeError(logits, io.eval_logits), 1e-4);
    }
    const fp32 = await replay(name, io, 'fp32');
    const scalar = (t: Tensor) => t.toFloat32Array()[0];
    report(`${name} fp32 cls loss`, relative(fp32.step.clsLoss, scalar(io.cls_loss)), 1e-4);
    report(`${name} fp32 PACE loss`, relative(fp32.step.paceLoss, scalar(io.pace_loss)), 1e-4);
    report(`${name} fp32 total loss`, relative(fp32.step.totalLoss, scalar(io.total_loss)), 1e-4);
    let worst = 0;
    for (const [param, reference] of Object.entries(prefixed(io, 'grad.')))
      worst = Math.max(worst, relativeError(fp32.gradients[param], reference));
    report(`${name} fp32 gradients (worst of ${Object.keys(fp32.gradients).length})`, worst, 1e-3);
    disposeTensors(fp32.gradients);

    const bf16 = await replay(name, io, 'bf16');
    report(`${name} bf16 cls loss vs fp32`, relative(bf16.step.clsLoss, fp32.step.clsLoss), 0.02);
    report(`${name} bf16 total loss vs fp32`, relative(bf16.step.totalLoss, fp32.step.totalLoss), 0.02);
    // As the CPU test: ‖g − ref‖ / ‖ref‖ over every trainable parameter (bf16 rounds at 2^-9 per element).
    let squaredError = 0;
    let squaredReference = 0;
    for (const [param, reference] of Object.entries(prefixed(io, 'grad.'))) {
      const ours = bf16.gradients[param].to('cpu').toFloat32Array();
      const ref = reference.toFloat32Array();
      for (let i = 0; i < ref.length; i++) {
        squaredError += (ours[i] - ref[i]) ** 2;
        squaredReference += ref[i] ** 2;
      }
    }
    report(`${name} bf16 gradients vs the reference (L2, all)`, Math.sqrt(squaredError / squaredReference), 0.05);
    disposeTensors(bf16.gradients);
    disposeTensors(io);
  }
  console.log(failures === 0 ? 'device parity: all checks passed' : `device parity: ${failures} check(s) failed`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
