#include "models/layers.h"

#include "models/cpu_attention.h"
#include "peft/noise.h"
#include "peft/pace_linear.h"

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

void LinearImpl::addBias(const torch::Tensor& value) {
  TORCH_CHECK(!bias.defined(), "linear '", path, "' already has a bias");
  TORCH_CHECK(value.dim() == 1 && value.size(0) == outFeatures, "a bias for linear '", path, "' must have shape [",
              outFeatures, "]");
  bias = register_parameter("bias", value.detach().clone().to(weight.options()), weight.requires_grad());
}

namespace {
thread_local bool adaptersBypassed = false;
}

AdapterBypassScope::AdapterBypassScope() : previous_(adaptersBypassed) { adaptersBypassed = true; }
AdapterBypassScope::~AdapterBypassScope() { adaptersBypassed = previous_; }

torch::Tensor LinearImpl::forward(const torch::Tensor& input) {
  if (noiseOnWholeOutput) {
    const torch::Tensor output = torch::linear(input, weight, bias);
    return noise ? noise->apply(path, output) : output;
  }
  if (!adapter || adaptersBypassed) return torch::linear(input, weight, bias);
  if (is_training() && noise && !noise->perRowMultiplier()) {
    // Additive or per-token noise (ablations): the adapter output is formed on its own and noised.
    const torch::Tensor adapted = peft::adapterOutput(*this, input);
    return torch::linear(input, weight, bias) + noise->apply(path, adapted);
  }
  at::Tensor multiplier;
  if (is_training() && noise) {
    std::vector<int64_t> outputShape = input.sizes().vec();
    outputShape.back() = outFeatures;
    multiplier = noise->multiplier(path, outputShape, input.options());
  }
  if (!multiplier.defined()) {
    // No noise here: the adapter folds into the weights, in training too (one GEMM instead of two).
    const auto [mergedWeight, mergedBias] = peft::mergedWeightAndBias(*this);
    return torch::linear(input, mergedWeight, mergedBias);
  }
  const peft::AdapterTerms terms = peft::adapterTerms(*this);
  if (terms.deltaWeight.defined())
    return peft::paceLinear(input, weight, bias, terms.deltaWeight, terms.shift, multiplier);
  // VPT-add alone: the adapter output is the same shift for every token, noised per row.
  std::vector<int64_t> rowShape(input.dim(), 1);
  rowShape.front() = multiplier.size(0);
  rowShape.back() = outFeatures;
  return torch::linear(input, weight, bias) + (multiplier * terms.shift).view(rowShape);
}

MlpImpl::MlpImpl(int64_t inFeatures, int64_t hiddenFeatures) {
  fc1 = register_module("fc1", Linear(inFeatures, hiddenFeatures));
  fc2 = register_module("fc2", Linear(hiddenFeatures, inFeatures));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& input) { return fc2(torch::gelu(fc1(input))); }

LayerNormImpl::LayerNormImpl(int64_t features_, double eps_) : features(features_), eps(eps_) {
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& input) {
  return at::layer_norm(input.to(weight.scalar_type()), {features}, weight, bias, eps);
}

LayerNorm layerNorm(int64_t features, double eps) { return LayerNorm(features, eps); }

namespace {
// The innermost BatchCopiesScope of this thread: how many copies, where they are stacked, whether that has
// happened yet in the current forward, and the stochastic-depth generator.
thread_local int64_t batchCopies = 1;
thread_local int64_t duplicateBefore = 0;
thread_local bool batchDuplicated = true;
thread_local std::optional<at::Generator> dropPathGenerator;
}  // namespace

BatchCopiesScope::BatchCopiesScope(int64_t copies, int64_t duplicateBeforeBlock, at::Generator generator)
    : previousCopies_(batchCopies),
      previousDuplicateBeforeBlock_(duplicateBefore),
      previousDuplicated_(batchDuplicated),
      previousGenerator_(dropPathGenerator) {
  TORCH_CHECK(copies >= 1, "a batch needs at least one copy");
  batchCopies = copies;
  duplicateBefore = std::max<int64_t>(0, duplicateBeforeBlock);
  batchDuplicated = copies == 1;
  dropPathGenerator = std::move(generator);
}

BatchCopiesScope::~BatchCopiesScope() {
  batchCopies = previousCopies_;
  duplicateBefore = previousDuplicateBeforeBlock_;
  batchDuplicated = previousDuplicated_;
  dropPathGenerator = previousGenerator_;
}

torch::Tensor duplicateBatch(const torch::Tensor& x) {
  if (batchDuplicated) return x;
  batchDuplicated = true;
  std::vector<int64_t> repeats(x.dim(), 1);
  repeats[0] = batchCopies;
  return x.repeat(repeats);
}

torch::Tensor duplicateBatchBefore(const torch::Tensor& x, int64_t block) {
  return block == duplicateBefore ? duplicateBatch(x) : x;
}

torch::Tensor dropPath(const torch::Tensor& branch, double rate, bool training) {
  if (rate <= 0.0 || !training) return branch;
  const double keep = 1.0 - rate;
  std::vector<int64_t> maskShape(branch.dim(), 1);
  const int64_t copies = batchDuplicated ? batchCopies : 1;
  TORCH_CHECK(branch.size(0) % copies == 0, "drop path: a batch of ", branch.size(0), " is not ", copies, " copies");
  maskShape[0] = branch.size(0) / copies;
  torch::Tensor mask = torch::empty(maskShape, branch.options());
  if (dropPathGenerator) {
    mask.bernoulli_(keep, *dropPathGenerator);
  } else {
    mask.bernoulli_(keep);
  }
  mask.div_(keep);
  if (copies > 1) {
    std::vector<int64_t> repeats(branch.dim(), 1);
    repeats[0] = copies;
    mask = mask.repeat(repeats);
  }
  return branch * mask;
}

namespace {

// softmax(q·kᵀ/√d + mask)·v over [..., tokens, headDim] inputs, the mask broadcasting against
// [..., tokens, tokens].
torch::Tensor scaledDotProductAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& mask) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt);
#else
  const torch::Tensor scaled = q * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  torch::Tensor scores = torch::matmul(scaled, k.transpose(-2, -1));
  if (mask.defined()) scores = scores + mask;
  return torch::matmul(torch::softmax(scores, -1), v);
#endif
}

}  // namespace

torch::Tensor qkvAttention(const torch::Tensor& qkv, int64_t heads, const torch::Tensor& mask) {
  const int64_t batch = qkv.size(0), tokens = qkv.size(1), dim = qkv.size(2) / 3;
  const torch::Tensor split = qkv.reshape({batch, tokens, 3, heads, dim / heads});
  if (cpuAttentionApplies(split, mask)) return cpuAttention(split, mask);
  const torch::Tensor parts = split.permute({2, 0, 3, 1, 4});
  return scaledDotProductAttention(parts[0], parts[1], parts[2], mask).transpose(1, 2).reshape({batch, tokens, dim});
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
