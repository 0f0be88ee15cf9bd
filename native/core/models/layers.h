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

torch::nn::LayerNorm layerNorm(int64_t features, double eps);

// Stochastic depth on a residual branch: in training, each sample's branch is kept with probability
// 1 - rate and scaled by 1 / (1 - rate); otherwise the branch is returned as it is.
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

// While a SharedDropPathScope is alive, the batch holds `copies` stacked copies of the same samples and every
// copy gets the same mask (PACE's two noisy views must differ only by their adapter noise).
torch::Tensor dropPath(const torch::Tensor& branch, double rate, bool training);

// The scope also lends dropPath a generator, so a seeded training step reproduces its masks.
class SharedDropPathScope {
 public:
  SharedDropPathScope(int64_t copies, at::Generator generator);
  ~SharedDropPathScope();
  SharedDropPathScope(const SharedDropPathScope&) = delete;
  SharedDropPathScope& operator=(const SharedDropPathScope&) = delete;

 private:
  int64_t previousCopies_;
  std::optional<at::Generator> previousGenerator_;
};

// The stochastic-depth rate of each of `count` blocks: linear from 0 to `maxRate`, computed in float32 as
// torch.linspace does.
std::vector<double> linearDropPathRates(double maxRate, int64_t count);

// timm's trunc_normal_: normal(mean, std) truncated to [low, high] (absolute bounds).
void truncatedNormal(torch::Tensor& tensor, double std, double low = -2.0, double high = 2.0);

}  // namespace pace::models
