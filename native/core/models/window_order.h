#pragma once
// Swin's shifted windows as one gather each way. A shifted block rolled the map, partitioned it into windows, and
// after attention merged and rolled it back: six copies forward and six backward (libtorch rolls one dimension at a
// time). Both sides are permutations of the tokens, so each is one gather, and its gradient the inverse gather.
#include <torch/types.h>

namespace pace::models {

// [H·W] long: for the windowed layout's token p (windows image-major, then row, then column; w² tokens each, row
// by row), the index into the H×W map, after a cyclic shift of `shift` toward the origin (timm's roll by -shift).
torch::Tensor shiftedWindowOrder(int64_t height, int64_t width, int64_t window, int64_t shift);

// out[:, p] = x[:, order[p]] for x [batch, tokens, channels]; `inverse` is order's inverse permutation, which the
// gradient gathers with (a scatter-add would need atomics on the GPU for no reason: no index repeats).
torch::Tensor permuteTokens(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse);

// The inverse of a permutation of 0..n-1.
torch::Tensor inversePermutation(const torch::Tensor& order);

}  // namespace pace::models
