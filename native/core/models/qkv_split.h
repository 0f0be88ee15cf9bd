#pragma once
// q, k and v of a packed qkv projection as views, with a backward that writes their gradients back into the
// packed layout in one pass, or in none when the attention's backward already wrote them there.
//
// Indexing the permuted projection (qkv[0], qkv[1], qkv[2]) has each gradient zero-filled into a tensor of the
// whole projection's size, copied in, and the three summed; unbind's stack and the reshape back copy twice.
#include <ATen/core/Tensor.h>

#include <array>

namespace pace::models {

// qkv [batch, tokens, 3·heads·headDim] -> q, k, v, each [batch, heads, tokens, headDim] (views of qkv).
std::array<at::Tensor, 3> splitQkv(const at::Tensor& qkv, int64_t heads);

// The gradient of the packed projection [batch, tokens, 3·heads·headDim] from those of q, k and v (each
// [batch, heads, tokens, headDim]; an undefined one counts as zeros). Where the three are views of one tensor
// laid out as the projection (as a memory-efficient attention backward may write them), that tensor is returned
// without a copy.
at::Tensor packQkvGradients(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv, at::IntArrayRef qkvShape,
                            int64_t heads);

}  // namespace pace::models
