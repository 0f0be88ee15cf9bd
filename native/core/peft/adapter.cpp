#include "peft/adapter.h"

#include "errors.h"
#include "peft/pace_linear.h"
#include "tensor/dtype.h"

namespace pace::peft {

at::Tensor Adapter::output(const models::LinearImpl& linear, const at::Tensor& input) const {
  const AdapterTerms t = terms(linear);
  if (t.deltaWeight.defined()) return torch::linear(input, t.deltaWeight, t.shift);
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = linear.outFeatures;
  return t.shift.expand(shape);
}

std::pair<at::Tensor, at::Tensor> Adapter::mergedWeightAndBias(const models::LinearImpl& linear) const {
  const AdapterTerms t = terms(linear);
  at::Tensor weight = t.deltaWeight.defined() ? linear.weight + t.deltaWeight : linear.weight;
  at::Tensor bias = linear.bias;
  if (t.shift.defined()) bias = bias.defined() ? bias + t.shift : t.shift;
  return {weight, bias};
}

// The three ways an adapted linear runs, chosen by the step's noise:
//   no noise here (inference, or σ = 0 for this linear): the adapter folded into the weights, one GEMM;
//   a per-row multiplier z (PACE's own noise): the fused PACE linear W0·x + b0 + z ⊙ a(x) (peft/pace_linear.h),
//   which also folds the epilogue in where it can;
//   additive or per-token noise (ablations): a(x) formed on its own and noised.
at::Tensor Adapter::forward(const models::LinearImpl& linear, const at::Tensor& input, models::ForwardContext& context,
                            const models::LinearEpilogue& epilogue) const {
  models::StepNoise* noise = linear.is_training() ? context.noise : nullptr;
  if (noise && noise->onWholeOutput()) {
    const auto [mergedWeight, mergedBias] = mergedWeightAndBias(linear);
    return epilogue.apply(noise->noisyWholeOutput(linear.path, torch::linear(input, mergedWeight, mergedBias)));
  }
  if (noise && !noise->perRowMultiplier()) {
    const at::Tensor adapted = output(linear, input);
    return epilogue.apply(torch::linear(input, linear.weight, linear.bias) +
                          noise->noisyAdapterOutput(linear.path, adapted));
  }
  at::Tensor multiplier;
  if (noise) {
    std::vector<int64_t> outputShape = input.sizes().vec();
    outputShape.back() = linear.outFeatures;
    // z in float32 at least, whatever precision the input arrives in (under autocast, the attention's and GELU's
    // bf16 outputs; Swin's windows): the epilogue kernels read it so, and rounding 1 + σ·ε to bf16 would coarsen it.
    multiplier =
        noise->rowMultiplier(linear.path, outputShape, input.options().dtype(atLeastFloat32(input.scalar_type())));
  }
  if (!multiplier.defined()) {
    const auto [mergedWeight, mergedBias] = mergedWeightAndBias(linear);
    return epilogue.apply(torch::linear(input, mergedWeight, mergedBias));
  }
  const AdapterTerms t = terms(linear);
  if (t.deltaWeight.defined())
    return paceLinear(input, linear.weight, linear.bias, t.deltaWeight, t.shift, multiplier, PaceLinearStrategy::Auto,
                      epilogue);
  // A shift alone (VPT-add): the same for every token, noised per row.
  std::vector<int64_t> rowShape(input.dim(), 1);
  rowShape.front() = multiplier.size(0);
  rowShape.back() = linear.outFeatures;
  return epilogue.apply(torch::linear(input, linear.weight, linear.bias) + (multiplier * t.shift).view(rowShape));
}

void checkAdapterFits(const models::LinearImpl& linear, int64_t rank) {
  if (linear.adapter) throw StateError("linear '" + linear.path + "' already has an adapter");
  const int64_t limit = std::min(linear.inFeatures, linear.outFeatures);
  if (rank < 1 || rank > limit)
    throw OptionError("adapter rank " + std::to_string(rank) + " does not fit linear '" + linear.path + "' (" +
                      std::to_string(linear.inFeatures) + " -> " + std::to_string(linear.outFeatures) +
                      "): it must be between 1 and " + std::to_string(limit));
}

void attachAdapter(models::LinearImpl& linear, const std::string& type, int64_t rank) {
  const AdapterFactory create = adapterFactory(type);
  checkAdapterFits(linear, rank);
  linear.adapter = create(linear, rank);
}

}  // namespace pace::peft
