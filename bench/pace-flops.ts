// The matrix arithmetic of one PACE training step on a ViT with an adapter on every Linear in the blocks (LoRA-mul
// + VPT-add, σ > 0), counted from the model's sizes: the numerator of the benchmark's "bf16 floor".
//
// Each noisy linear y = x·W0ᵀ + z ⊙ (x·ΔWᵀ + c) over M rows (the batch twice, each copy with its own noise z)
// computes, in the stacked form ours and the official code's two linears share:
//   forward   x·[W0; ΔW]ᵀ                    2·M·in·2out
//   backward  [dY, z⊙dY]·[W0; ΔW] (dX)        2·M·2out·in
//             (z⊙dY)ᵀ·x (dΔW)                 2·M·out·in      10·M·in·out in all.
// The least any formulation needs is 6·M·in·out: with a weight W0 + diag(z)·ΔW built per sample the forward and
// dX products are single, but building them moves out·in values per sample, far more bytes than the GEMMs save on
// a GPU. The first block's qkv takes no input gradient (nothing before it trains): 4·M·in·out (2 in the least
// form) less. Attention's two products per head (QKᵀ, AV: 4·T²·D forward, twice that backward), the frozen patch
// embedding's forward (once per image: the batch is doubled at the first noisy linear) and the rank-r products
// that build ΔW and its gradient are added; norms, softmax and element-wise work are not matrix arithmetic.
import type { ModelSpec } from 'pace-peft';

export interface PaceStepFlops {
  /** As computed with [W0; ΔW] stacked (ours, and the official code's two linears): 10·M·in·out per linear. */
  stacked: number;
  /** The least any formulation needs: 6·M·in·out per linear. */
  minimal: number;
}

export function vitPaceStepFlops(spec: ModelSpec, batchSize: number, rank: number): PaceStepFlops {
  if (spec.family !== 'vit') throw new Error(`vitPaceStepFlops counts ViTs, not ${spec.family}`);
  const d = spec.embedDim;
  const hidden = Math.floor(d * spec.mlpRatio);
  const grid = Math.floor(spec.imgSize / spec.patchSize);
  const tokens = grid * grid + 1;
  const rows = 2 * batchSize * tokens; // PACE's two copies of the batch
  // qkv, proj, fc1, fc2: Σ in·out of a block
  const linear = d * 3 * d + d * d + d * hidden + hidden * d;
  const linearMacs = spec.depth * linear;
  const firstQkv = rows * d * 3 * d; // M·in·out of the first block's qkv, whose input gradient is not needed
  const attention = spec.depth * 2 * batchSize * 12 * tokens * tokens * d; // 4·T²·D forward + 8·T²·D backward
  const patchEmbedding = batchSize * 2 * (grid * grid) * (3 * spec.patchSize ** 2) * d;
  // ΔW = W0 ⊙ (down·up) forward (2·out·in·r), and the gradients of down and up (2·out·in·r each), once per step
  const adapterProducts = 6 * linearMacs * rank;
  const common = attention + patchEmbedding + adapterProducts;
  return {
    stacked: 10 * rows * linearMacs - 4 * firstQkv + common,
    minimal: 6 * rows * linearMacs - 2 * firstQkv + common,
  };
}
