#include "peft/adapters.h"

#include <torch/nn/init.h>

#include "errors.h"
#include "models/layers.h"

namespace pace::peft {

AdapterType adapterTypeFromName(const std::string& name) {
  if (name == "loramul_vptadd") return AdapterType::LoraMulVptAdd;
  if (name == "loramul") return AdapterType::LoraMul;
  if (name == "loraadd") return AdapterType::LoraAdd;
  if (name == "vptadd") return AdapterType::VptAdd;
  throw OptionError("unknown adapter type '" + name + "' (expected loramul_vptadd, loramul, loraadd or vptadd)");
}

std::string adapterTypeName(AdapterType type) {
  switch (type) {
    case AdapterType::LoraMulVptAdd:
      return "loramul_vptadd";
    case AdapterType::LoraMul:
      return "loramul";
    case AdapterType::LoraAdd:
      return "loraadd";
    case AdapterType::VptAdd:
      return "vptadd";
  }
  return "?";
}

namespace {
bool hasLora(AdapterType type) { return type != AdapterType::VptAdd; }
bool hasPrompt(AdapterType type) { return type == AdapterType::LoraMulVptAdd || type == AdapterType::VptAdd; }
bool hasDeltaBias(AdapterType type) { return type != AdapterType::VptAdd; }
bool multiplicative(AdapterType type) { return type == AdapterType::LoraMulVptAdd || type == AdapterType::LoraMul; }
}  // namespace

void attachAdapter(models::LinearImpl& linear, const AdapterConfig& config) {
  const int64_t out = linear.outFeatures, in = linear.inFeatures;
  if (linear.adapter) throw StateError("linear '" + linear.path + "' already has an adapter");
  if (config.rank < 1 || config.rank > std::min(in, out))
    throw OptionError("adapter rank " + std::to_string(config.rank) + " does not fit linear '" + linear.path + "' (" +
                      std::to_string(in) + " -> " + std::to_string(out) + "): it must be between 1 and " +
                      std::to_string(std::min(in, out)));
  const int64_t r = config.rank;
  const auto options = linear.weight.options();  // the adapter lives where and as the frozen weight does
  torch::NoGradGuard noGrad;
  if (hasLora(config.type)) {
    linear.delta_W_down = linear.register_parameter("delta_W_down", torch::zeros({out, r}, options));
    linear.delta_W_up = linear.register_parameter("delta_W_up", torch::empty({r, in}, options));
    torch::nn::init::xavier_uniform_(linear.delta_W_up);
  }
  if (hasDeltaBias(config.type) && linear.bias.defined()) {
    linear.delta_b = linear.register_parameter("delta_b", torch::zeros({out}, options));
  }
  if (hasPrompt(config.type)) {
    linear.delta_prompt_down = linear.register_parameter("delta_prompt_down", torch::zeros({in, r}, options));
    linear.delta_prompt_up = linear.register_parameter("delta_prompt_up", torch::empty({r, 1}, options));
    torch::nn::init::xavier_uniform_(linear.delta_prompt_up);
  }
  linear.adapter = config;
}

AdapterTerms adapterTerms(const models::LinearImpl& linear) {
  AdapterTerms terms;
  if (!linear.adapter) return terms;
  const AdapterType type = linear.adapter->type;
  const torch::Tensor& w0 = linear.weight;
  if (hasLora(type)) {
    const torch::Tensor product = torch::matmul(linear.delta_W_down, linear.delta_W_up);
    terms.deltaWeight = multiplicative(type) ? w0 * product : product;
  }
  auto addShift = [&](const torch::Tensor& term) { terms.shift = terms.shift.defined() ? terms.shift + term : term; };
  if (hasPrompt(type))
    addShift(torch::matmul(w0, torch::matmul(linear.delta_prompt_down, linear.delta_prompt_up)).squeeze(1));
  if (linear.delta_b.defined()) addShift(multiplicative(type) ? linear.bias * linear.delta_b : linear.delta_b);
  return terms;
}

torch::Tensor adapterOutput(const models::LinearImpl& linear, const torch::Tensor& input) {
  const AdapterTerms terms = adapterTerms(linear);
  if (terms.deltaWeight.defined()) return torch::linear(input, terms.deltaWeight, terms.shift);
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = linear.outFeatures;
  return terms.shift.expand(shape);
}

std::pair<torch::Tensor, torch::Tensor> mergedWeightAndBias(const models::LinearImpl& linear) {
  const AdapterTerms terms = adapterTerms(linear);
  torch::Tensor weight = terms.deltaWeight.defined() ? linear.weight + terms.deltaWeight : linear.weight;
  torch::Tensor bias = linear.bias;
  if (terms.shift.defined()) bias = bias.defined() ? bias + terms.shift : terms.shift;
  return {weight, bias};
}

}  // namespace pace::peft
