#include "models/layers.h"

#include <torch/nn/init.h>

#include <cmath>

namespace pace::models {

LinearImpl::LinearImpl(int64_t inFeatures_, int64_t outFeatures_, bool withBias)
    : inFeatures(inFeatures_), outFeatures(outFeatures_) {
  weight = register_parameter("weight", torch::empty({outFeatures, inFeatures}));
  if (withBias) bias = register_parameter("bias", torch::empty({outFeatures}));
  resetParameters();
}

void LinearImpl::resetParameters() {
  torch::NoGradGuard noGrad;
  truncatedNormal(weight, 0.02);
  if (bias.defined()) bias.zero_();
}

torch::Tensor LinearImpl::forward(const torch::Tensor& input) { return torch::linear(input, weight, bias); }

MlpImpl::MlpImpl(int64_t inFeatures, int64_t hiddenFeatures) {
  fc1 = register_module("fc1", Linear(inFeatures, hiddenFeatures));
  fc2 = register_module("fc2", Linear(hiddenFeatures, inFeatures));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& input) { return fc2(torch::gelu(fc1(input))); }

torch::nn::LayerNorm layerNorm(int64_t features, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({features}).eps(eps));
}

torch::Tensor dropPath(const torch::Tensor& branch, double rate, bool training) {
  if (rate <= 0.0 || !training) return branch;
  const double keep = 1.0 - rate;
  std::vector<int64_t> maskShape(branch.dim(), 1);
  maskShape[0] = branch.size(0);
  const torch::Tensor mask = torch::empty(maskShape, branch.options()).bernoulli_(keep).div_(keep);
  return branch * mask;
}

std::vector<double> linearDropPathRates(double maxRate, int64_t count) {
  const torch::Tensor rates = torch::linspace(0.0, maxRate, count, torch::kFloat32);
  std::vector<double> result(count);
  for (int64_t i = 0; i < count; ++i) result[i] = rates[i].item<float>();
  return result;
}

void truncatedNormal(torch::Tensor& tensor, double std, double low, double high) {
  torch::NoGradGuard noGrad;
  // Inverse-CDF sampling, as timm does: uniform between the bounds' CDF values, then erfinv.
  const auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double lower = cdf(low / std), upper = cdf(high / std);
  tensor.uniform_(2 * lower - 1, 2 * upper - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(low, high);
}

}  // namespace pace::models
