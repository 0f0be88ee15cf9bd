#pragma once
// Building blocks shared by the backbones, with timm's parameter names.
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include <string>

namespace pace::models {

// y = x·Wᵀ + b, parameters `weight` [out, in] and `bias` [out] (absent when bias = false): the Linear every
// adapter attaches to.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t inFeatures, int64_t outFeatures, bool bias = true);
  torch::Tensor forward(const torch::Tensor& input);
  void resetParameters();  // timm's default: trunc_normal(std=0.02) weight, zero bias

  int64_t inFeatures;
  int64_t outFeatures;
  torch::Tensor weight;
  torch::Tensor bias;
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
torch::Tensor dropPath(const torch::Tensor& branch, double rate, bool training);

// The stochastic-depth rate of each of `count` blocks: linear from 0 to `maxRate`, computed in float32 as
// torch.linspace does.
std::vector<double> linearDropPathRates(double maxRate, int64_t count);

// timm's trunc_normal_: normal(mean, std) truncated to [low, high] (absolute bounds).
void truncatedNormal(torch::Tensor& tensor, double std, double low = -2.0, double high = 2.0);

}  // namespace pace::models
