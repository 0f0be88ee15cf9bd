#include "models/layers.h"

#include "models/cpu_attention.h"
#include "models/qkv_split.h"
#include "tensor/layer_norm_to.h"
#include "tensor/precision.h"

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
  biasAdded = true;
}

void LinearImpl::dropAddedBias() {
  TORCH_CHECK(biasAdded, "linear '", path, "' has no added bias to drop");
  parameters_.erase("bias");  // libtorch has no unregister_parameter
  bias = torch::Tensor();
  biasAdded = false;
}

torch::Tensor LinearImpl::forward(const torch::Tensor& input, ForwardContext& context, const LinearEpilogue& epilogue) {
  if (adapter && !context.adaptersBypassed) return adapter->forward(*this, input, context, epilogue);
  const torch::Tensor output = torch::linear(input, weight, bias);
  return epilogue.apply(isHead && context.noise ? context.noise->noisyWholeOutput(path, output) : output);
}

MlpImpl::MlpImpl(int64_t inFeatures, int64_t hiddenFeatures) {
  fc1 = register_module("fc1", Linear(inFeatures, hiddenFeatures));
  fc2 = register_module("fc2", Linear(hiddenFeatures, inFeatures));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& input, ForwardContext& context, const LinearEpilogue& epilogue) {
  return fc2(fc1(input, context, LinearEpilogue::gelu()), context, epilogue);
}

LayerNormImpl::LayerNormImpl(int64_t features_, double eps_) : features(features_), eps(eps_) {
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& input) {
  return at::layer_norm(input.to(weight.scalar_type()), {features}, weight, bias, eps);
}

torch::Tensor LayerNormImpl::forwardForProduct(const torch::Tensor& input) {
  const std::optional<at::ScalarType> cast = autocastDtype(input.device().type());
  if (!cast || input.scalar_type() != weight.scalar_type()) return forward(input);
  // On the CPU ATen's vectorised LayerNorm and a cast beat the fused loops (a ViT-S bf16 step: 821 against 843 ms).
  if (!input.is_cuda()) return forward(input).to(*cast);
  return layerNormTo(input, weight, bias, eps, *cast);
}

LayerNorm layerNorm(int64_t features, double eps) { return LayerNorm(features, eps); }

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
  // The fused kernels take one mask per sample or one for all: a mask repeating every k samples is laid out whole.
  torch::Tensor perSample = mask;
  if (mask.defined() && mask.size(0) != 1 && mask.size(0) != batch) {
    const int64_t period = mask.size(0);
    TORCH_CHECK(batch % period == 0, "attention: a mask of ", period, " samples does not divide a batch of ", batch);
    perSample = mask.unsqueeze(0)
                    .expand({batch / period, period, heads, tokens, tokens})
                    .reshape({batch, heads, tokens, tokens});
  }
  const auto [q, k, v] = splitQkv(qkv, heads);
  return scaledDotProductAttention(q, k, v, perSample).transpose(1, 2).reshape({batch, tokens, dim});
}

std::vector<double> linearDropPathRates(double maxRate, int64_t count) {
  const torch::Tensor rates = torch::linspace(0.0, maxRate, count, torch::kFloat32);
  std::vector<double> result(count);
  for (int64_t i = 0; i < count; ++i) result[i] = rates[i].item<float>();
  return result;
}

}  // namespace pace::models
