#pragma once
// Building blocks shared by the backbones, with timm's parameter names.
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include <memory>
#include <string>

#include "models/forward_context.h"
#include "models/init_random.h"
#include "models/linear_adapter.h"

namespace pace::models {

// y = x·Wᵀ + b, parameters `weight` [out, in] and `bias` [out] (absent when bias = false): the Linear every
// adapter attaches to.
//
// With an adapter (peft/adapter.h) the adapter computes the output (W0·x + b0 + z ⊙ a(x) in training, z being
// the context's PACE noise); the classifier head, whose whole output trains, takes the noise on all of it.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t inFeatures, int64_t outFeatures, bool bias = true);
  torch::Tensor forward(const torch::Tensor& input, ForwardContext& context, const LinearEpilogue& epilogue = {});
  void resetParameters();  // timm's default: trunc_normal(std=0.02) weight, zero bias
  // Gives a bias-less linear a bias (a merged VPT shift on Swin's downsample.reduction needs one).
  void addBias(const torch::Tensor& value);
  // Takes such an added bias away again (a load of weights that have none: timm's own, say).
  void dropAddedBias();
  bool biasAdded = false;

  int64_t inFeatures;
  int64_t outFeatures;
  torch::Tensor weight;
  torch::Tensor bias;

  std::string path;  // the dotted timm path of this linear in its model (set by Backbone::linears())
  std::shared_ptr<const LinearAdapter> adapter;  // null: a plain linear
  // The classifier head: in a PACE step its whole output is the "adapter output" (its frozen part is zero).
  bool isHead = false;
};
TORCH_MODULE(Linear);

// fc1 -> exact (erf) GELU -> fc2, as timm's Mlp; `epilogue` is fc2's (a block's residual add).
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t inFeatures, int64_t hiddenFeatures);
  torch::Tensor forward(const torch::Tensor& input, ForwardContext& context, const LinearEpilogue& epilogue = {});

  Linear fc1{nullptr};
  Linear fc2{nullptr};
};
TORCH_MODULE(Mlp);

// LayerNorm over the last axis, as torch::nn::LayerNorm (parameters `weight`, `bias`), computed in its
// parameters' dtype: under bf16 autocast a bf16 input is normalised in float32, as CUDA's autocast does for
// layer_norm (libtorch 1.13's CPU autocast leaves layer_norm to the caller, which then fails on mixed dtypes).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t features, double eps);
  torch::Tensor forward(const torch::Tensor& input);
  // The output as the product after it reads it: under autocast in the autocast dtype (on a GPU in one pass,
  // normalised in float32 and rounded once: tensor/layer_norm_to.h); forward() otherwise.
  torch::Tensor forwardForProduct(const torch::Tensor& input);

  int64_t features;
  double eps;
  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

LayerNorm layerNorm(int64_t features, double eps);

// The stochastic-depth rate of each of `count` blocks: linear from 0 to `maxRate`, computed in float32 as
// torch.linspace does.
std::vector<double> linearDropPathRates(double maxRate, int64_t count);

// Multi-head attention softmax(q·kᵀ/√d + mask)·v from a qkv projection's output [batch, tokens, 3·dim] (channel
// c is (which, head, d), as in timm) to [batch, tokens, dim]; `mask` (undefined: none) is additive,
// [k, heads, tokens, tokens] with k dividing the batch, sample b taking mask b % k (1: one for all; Swin: its
// windows' shift masks, repeating per image). float32 on an AVX2 CPU: models/cpu_attention.h; otherwise libtorch
// ≥ 2.0's fused scaled_dot_product_attention (flash or memory-efficient kernels on CUDA), or on 1.13 the explicit
// products.
torch::Tensor qkvAttention(const torch::Tensor& qkv, int64_t heads, const torch::Tensor& mask = {});

}  // namespace pace::models
