#pragma once
// Building blocks shared by the backbones, with timm's parameter names.
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include <optional>
#include <string>

#include "peft/adapters.h"

namespace pace::peft {
class PaceNoise;
}

namespace pace::models {

// y = x·Wᵀ + b, parameters `weight` [out, in] and `bias` [out] (absent when bias = false): the Linear every
// adapter attaches to.
//
// With an adapter (peft/adapters.h) it computes W0·x + b0 + z ⊙ a(x) in training and the merged
// (W0 + ΔW)·x + (b0 + c) in evaluation; z comes from the PACE noise installed for the step, if any.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t inFeatures, int64_t outFeatures, bool bias = true);
  torch::Tensor forward(const torch::Tensor& input);
  void resetParameters();  // timm's default: trunc_normal(std=0.02) weight, zero bias
  // Gives a bias-less linear a bias (a merged VPT shift on Swin's downsample.reduction needs one).
  void addBias(const torch::Tensor& value);

  int64_t inFeatures;
  int64_t outFeatures;
  torch::Tensor weight;
  torch::Tensor bias;

  std::string path;  // the dotted timm path of this linear in its model (set by Backbone::linears())
  std::optional<peft::AdapterConfig> adapter;
  torch::Tensor delta_W_down, delta_W_up, delta_b, delta_prompt_down, delta_prompt_up;
  // PACE: the noise source for this forward (null outside a noisy step); for the head, the whole output is
  // the "adapter" whose frozen part is zero, so the noise multiplies all of it.
  peft::PaceNoise* noise = nullptr;
  bool noiseOnWholeOutput = false;
};
TORCH_MODULE(Linear);

// fc1 -> exact (erf) GELU -> fc2, as timm's Mlp.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t inFeatures, int64_t hiddenFeatures);
  torch::Tensor forward(const torch::Tensor& input);

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

  int64_t features;
  double eps;
  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

LayerNorm layerNorm(int64_t features, double eps);

// While an AdapterBypassScope is alive, adapted linears compute only their frozen part: the pretrained
// model's output, for FP-distance and the FPA ablation.
class AdapterBypassScope {
 public:
  AdapterBypassScope();
  ~AdapterBypassScope();
  AdapterBypassScope(const AdapterBypassScope&) = delete;
  AdapterBypassScope& operator=(const AdapterBypassScope&) = delete;

 private:
  bool previous_;
};

// Stochastic depth: in training each sample's branch is kept with probability 1 - rate and scaled by
// 1 / (1 - rate); otherwise the branch is returned as it is. Copies of a batch (BatchCopiesScope) share masks.
torch::Tensor dropPath(const torch::Tensor& branch, double rate, bool training);

// While a BatchCopiesScope is alive, a forward carries `copies` stacked copies of its batch (PACE's two noisy
// views) from block `duplicateBeforeBlock` on: before the first noisy block every copy would compute the same
// values, so the backbone computes them once and stacks the copies there (duplicateBatchBefore), or at the
// latest before the head (duplicateBatch). dropPath gives every copy the same mask, so the views differ only by
// their adapter noise, and draws it from the scope's generator, so a seeded step reproduces its masks.
class BatchCopiesScope {
 public:
  BatchCopiesScope(int64_t copies, int64_t duplicateBeforeBlock, at::Generator generator);
  ~BatchCopiesScope();
  BatchCopiesScope(const BatchCopiesScope&) = delete;
  BatchCopiesScope& operator=(const BatchCopiesScope&) = delete;

 private:
  int64_t previousCopies_;
  int64_t previousDuplicateBeforeBlock_;
  bool previousDuplicated_;
  std::optional<at::Generator> previousGenerator_;
};

// Stacks the scope's copies of `x` along the batch axis if that has not happened yet in this forward.
torch::Tensor duplicateBatch(const torch::Tensor& x);
// The same, when `block` is the block the scope duplicates before.
torch::Tensor duplicateBatchBefore(const torch::Tensor& x, int64_t block);

// The stochastic-depth rate of each of `count` blocks: linear from 0 to `maxRate`, computed in float32 as
// torch.linspace does.
std::vector<double> linearDropPathRates(double maxRate, int64_t count);

// Multi-head attention softmax(q·kᵀ/√d + mask)·v from a qkv projection's output [batch, tokens, 3·dim] (channel
// c is (which, head, d), as in timm) to [batch, tokens, dim]; `mask` (undefined: none) is additive,
// [batch or 1, heads, tokens, tokens]. float32 on an AVX2 CPU: models/cpu_attention.h; otherwise libtorch ≥ 2.0's
// fused scaled_dot_product_attention (flash or memory-efficient kernels on CUDA), or on 1.13 the explicit
// products.
torch::Tensor qkvAttention(const torch::Tensor& qkv, int64_t heads, const torch::Tensor& mask = {});

// timm's trunc_normal_: normal(mean, std) truncated to [low, high] (absolute bounds).
void truncatedNormal(torch::Tensor& tensor, double std, double low = -2.0, double high = 2.0);

}  // namespace pace::models
