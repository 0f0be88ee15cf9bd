#pragma once
// The fused PACE linear's element-wise halves on CUDA (native/kernels/pace_epilogue.cu), for the stacked
// formulation: forward  Y = S[:, :out] + b0 + z ⊙ (S[:, out:] + c)  with S = X·[W0; ΔW]ᵀ,
//              backward G = [dY, z ⊙ dY]  so that dX = G·[W0; ΔW] and dΔW = (z ⊙ dY)ᵀ·X.
// Only built with the CUDA kernels; elsewhere `paceEpilogueOnDevice` is false and callers use ATen ops.
#include <ATen/ATen.h>

namespace pace::peft {

#ifdef PACE_WITH_CUDA_KERNELS
// Whether the kernels take tensors like `t`: on a CUDA device, float32 or bfloat16.
bool paceEpilogueOnDevice(const at::Tensor& t);
// stacked [rows·tokens, 2·out]; bias, shift [out] in its dtype; noise float32 [rows, out]. Returns [rows·tokens, out].
at::Tensor paceEpilogueForwardCuda(const at::Tensor& stacked, const at::Tensor& bias, const at::Tensor& shift,
                                   const at::Tensor& noise, int64_t tokensPerRow);
// gradOut [rows·tokens, out] -> [rows·tokens, 2·out] = [dY, z ⊙ dY].
at::Tensor paceEpilogueBackwardCuda(const at::Tensor& gradOut, const at::Tensor& noise, int64_t tokensPerRow);
#else
inline bool paceEpilogueOnDevice(const at::Tensor&) { return false; }
#endif

}  // namespace pace::peft
