#pragma once
// LayerNorm over the last axis computed in float32 and written once in `output`'s dtype (bf16 under autocast):
// what a product after it reads, without a float32 output and a separate cast pass, forward and backward (the
// formulas: native/kernels/layer_norm_body.h; CUDA kernels on a GPU, the same arithmetic in CPU loops here).
#include <ATen/ATen.h>

namespace pace {

// Whether layerNormTo runs its own kernels for these (else it is at::layer_norm and a cast): float32 input to a
// bf16 or float32 output (float64 to float64 on the CPU, for tests), on the CPU or on CUDA in a build with the
// kernels, frozen (no-gradient) float32 weight and bias, and fused epilogues on (tensor/fused_epilogues.h).
bool layerNormToFuses(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, at::ScalarType output);

// input [..., features]; weight, bias [features].
at::Tensor layerNormTo(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, double eps,
                       at::ScalarType output);

}  // namespace pace
