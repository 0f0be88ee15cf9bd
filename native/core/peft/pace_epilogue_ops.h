#pragma once
// The fused PACE linear's epilogue passes on tensors (the arithmetic: native/kernels/pace_epilogue_body.h): the
// CUDA kernels on a GPU, the same arithmetic in CPU loops elsewhere, one pass over the output each.
#include <ATen/ATen.h>

#include "pace_epilogue_body.h"

namespace pace::peft {

using kernels::EpilogueKind;

// Whether the epilogues take tensors like `t`: float32, bfloat16 or float64 on the CPU; float32 or bfloat16 on
// CUDA in a build with the kernels.
bool paceEpilogueRuns(const at::Tensor& t);
// The dtype of the epilogue's arithmetic for products in `compute`, and of the noise, the per-row scale and the
// residual stream it reads: float64 for float64, float32 otherwise.
at::ScalarType epilogueAccumulator(at::ScalarType compute);

struct EpilogueForwardResult {
  at::Tensor output;         // [rows·tokens, out]: the compute dtype, or the accumulator's for Residual
  at::Tensor preActivation;  // Gelu: h [rows·tokens, out], for the backward
};

// stacked [rows·tokens, 2·out] = X·[W0; ΔW]ᵀ; bias, shift [out] (undefined: 0); noise [rows, out] and rowScale
// [rows] (undefined: 1); residual [rows·tokens, out] in the accumulator dtype (Residual only).
EpilogueForwardResult paceEpilogueForward(EpilogueKind kind, const at::Tensor& stacked, const at::Tensor& bias,
                                          const at::Tensor& shift, const at::Tensor& noise, const at::Tensor& rowScale,
                                          const at::Tensor& residual, int64_t tokensPerRow);

// gradOut [rows·tokens, out] (the accumulator dtype for Residual) -> [dH, z ⊙ dH] [rows·tokens, 2·out] in the
// dtype of `like` (the compute dtype).
at::Tensor paceEpilogueBackward(EpilogueKind kind, const at::Tensor& gradOut, const at::Tensor& preActivation,
                                const at::Tensor& noise, const at::Tensor& rowScale, int64_t tokensPerRow,
                                at::ScalarType compute);

}  // namespace pace::peft
