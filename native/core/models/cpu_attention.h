#pragma once
// Multi-head attention on the CPU straight from a qkv projection: softmax(q·kᵀ/√d + mask)·v for every
// sample (or window) and head, each head done by one thread in cache: its products (kernels/cpu/small_gemm.h)
// and its softmax (kernels/cpu/softmax_rows.h) in one go. The gradient is written straight into the qkv
// layout and the output comes out as [batch, tokens, heads·headDim], so neither side needs a transpose.
//
// Memory is what the explicit path keeps for backward: the qkv tensor and the attention probabilities.
#include <ATen/core/Tensor.h>

namespace pace::models {

// qkv [batch, tokens, 3, heads, headDim] float32 on the CPU; mask undefined or additive, shaped
// [k, heads, tokens, tokens] with k dividing the batch (sample b takes mask b % k: Swin's windows repeat their
// shift mask per image); needs an AVX2/FMA CPU.
bool cpuAttentionApplies(const at::Tensor& qkv, const at::Tensor& mask);

// Returns [batch, tokens, heads·headDim]. Differentiable in qkv and the mask (once: no double backward).
at::Tensor cpuAttention(const at::Tensor& qkv, const at::Tensor& mask);

}  // namespace pace::models
