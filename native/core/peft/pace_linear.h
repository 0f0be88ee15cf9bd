#pragma once
// The noisy adapted linear of a PACE step as one autograd op:
//   y = x·W0ᵀ + b0 + z ⊙ (x·ΔWᵀ + c),   z [rows, out]: one multiplier per row of x (its first axis) and channel.
// Written as two linears (the reference's way) it costs two GEMMs forward and three backward. Because z is
// constant along a row, row s can use its own weight W_s = W0 + diag(z_s)·ΔW: one GEMM forward, and backward
// dX_s = dY_s·W_s (one) plus dΔW = (z ⊙ dY)ᵀ·X (one), so three GEMMs instead of five. The per-row weights are
// built in chunks that stay in cache and rebuilt in backward, so memory stays bounded.
#include <ATen/ATen.h>

#include "models/linear_epilogue.h"

namespace pace::peft {

enum class PaceLinearStrategy {
  Auto,           // chosen by shape (see choosePaceLinearStrategy)
  PerRowWeight,   // one GEMM per row against W0 + diag(z_s)·ΔW
  StackedWeight,  // one GEMM against [W0; ΔW] ([2·out, in]): the reference's FLOPs, in one call
  Unfused,        // the reference's two linears, through ordinary autograd (for tests and comparisons)
};

// input [rows, ..., in]; weight W0 [out, in] and bias b0 [out] (undefined: none) are the frozen layer;
// deltaWeight ΔW [out, in] and shift c [out] (undefined: none) the adapter's terms; multiplier z [rows, out]
// (no gradient). Gradients flow to every input that requires one except z. `epilogue` (the GELU after the linear,
// or the residual add with stochastic depth) runs in the same pass as the noise where the stacked weight's
// epilogue kernels run, and after the op otherwise.
at::Tensor paceLinear(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      const at::Tensor& deltaWeight, const at::Tensor& shift, const at::Tensor& multiplier,
                      PaceLinearStrategy strategy = PaceLinearStrategy::Auto,
                      const models::LinearEpilogue& epilogue = {});

// The process-wide strategy `Auto` resolves to (initially Auto itself: chosen by shape). For benchmarks and
// tests that compare the formulations on whole models.
void setPaceLinearStrategy(PaceLinearStrategy strategy);
PaceLinearStrategy paceLinearStrategy();

// The strategy Auto picks for `tokensPerRow` tokens sharing each row's weight: per-row weights once a row has
// enough tokens for its GEMM to outweigh building its weight. On a GPU: the stacked weight.
PaceLinearStrategy choosePaceLinearStrategy(int64_t tokensPerRow, int64_t inFeatures, int64_t outFeatures,
                                            c10::DeviceType device = c10::DeviceType::CPU);

}  // namespace pace::peft
