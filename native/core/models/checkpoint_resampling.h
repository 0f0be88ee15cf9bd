#pragma once
// A checkpoint's tensors fitted to a model of another geometry, with timm 0.9.12's rules (its checkpoint filters):
// a ViT's position embedding to another grid, a patch embedding to another patch size, Swin's relative-position
// bias tables to another window.
#include <torch/types.h>

#include <cstdint>

namespace pace::models {

// Resamples a [1, prefix + g², D] position embedding to a newGrid² grid, keeping the prefix tokens aside:
// bicubic with antialias (timm's state-dict filter) or bilinear without (timm's .npz loader).
torch::Tensor resamplePositionEmbedding(const torch::Tensor& posEmbed, int64_t newGrid, int64_t prefixTokens,
                                        bool bicubicAntialias);

// timm's `resample_patch_embed` (FlexiViT): a [O, I, h, w] patch kernel to [O, I, height, width], through the
// pseudo-inverse of the patch resize (bicubic with antialias, or bilinear without, as above). When the patch
// grows, the new kernel applied to a resized patch gives what the old one gave on the patch itself.
torch::Tensor resamplePatchEmbedding(const torch::Tensor& kernel, int64_t height, int64_t width, bool bicubicAntialias);

// timm's `resize_rel_pos_bias_table` (BEiT's, without SciPy): a [(2w−1)², heads] Swin table to [(2W−1)², heads].
// The old offsets are spread over the new range on a geometric progression and interpolated linearly there, in
// float32 as timm computes it. Throws ShapeError when the table is not a square of odd side.
torch::Tensor resizeRelativePositionTable(const torch::Tensor& table, int64_t newWindow);

}  // namespace pace::models
