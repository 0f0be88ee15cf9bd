#include "peft/adapter_parts.h"

#include "models/init_random.h"

namespace pace::peft {

LowRankPair LowRankPair::attach(models::LinearImpl& linear, int64_t rank) {
  const auto options = linear.weight.options();
  torch::NoGradGuard noGrad;
  LowRankPair pair;
  pair.down = linear.register_parameter("delta_W_down", torch::zeros({linear.outFeatures, rank}, options));
  pair.up = linear.register_parameter("delta_W_up", torch::empty({rank, linear.inFeatures}, options));
  models::xavierUniform(pair.up);
  return pair;
}

at::Tensor LowRankPair::product() const { return torch::matmul(down, up); }

PromptPair PromptPair::attach(models::LinearImpl& linear, int64_t rank) {
  const auto options = linear.weight.options();
  torch::NoGradGuard noGrad;
  PromptPair pair;
  pair.down = linear.register_parameter("delta_prompt_down", torch::zeros({linear.inFeatures, rank}, options));
  pair.up = linear.register_parameter("delta_prompt_up", torch::empty({rank, 1}, options));
  models::xavierUniform(pair.up);
  return pair;
}

at::Tensor PromptPair::shift(const at::Tensor& frozenWeight) const {
  return torch::matmul(frozenWeight, torch::matmul(down, up)).squeeze(1);
}

at::Tensor attachDeltaBias(models::LinearImpl& linear, DeltaBiasUse use) {
  if (use == DeltaBiasUse::ScalesBias && !linear.bias.defined()) return {};
  torch::NoGradGuard noGrad;
  return linear.register_parameter("delta_b", torch::zeros({linear.outFeatures}, linear.weight.options()));
}

LowRankPromptParts LowRankPromptParts::attach(models::LinearImpl& linear, int64_t rank, DeltaBiasUse use) {
  LowRankPromptParts parts;
  parts.lowRank = LowRankPair::attach(linear, rank);
  parts.deltaBias = attachDeltaBias(linear, use);
  parts.prompt = PromptPair::attach(linear, rank);
  return parts;
}

at::Tensor addToShift(const at::Tensor& shift, const at::Tensor& term) { return shift.defined() ? shift + term : term; }

}  // namespace pace::peft
