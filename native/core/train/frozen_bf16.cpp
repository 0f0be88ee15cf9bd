#include "train/frozen_bf16.h"

#include "text.h"

namespace pace::train {

bool FrozenBf16Copies::refresh(torch::nn::Module& model) {
  torch::NoGradGuard noGrad;
  if (copies_.empty()) {
    // The frozen weights of the linears and convolutions: what autocast would cast to bf16 at every use.
    // Position embeddings, class tokens and bias tables stay float32, so the residual stream they start
    // stays float32 as it does under PyTorch's autocast.
    for (const auto& named : model.named_parameters()) {
      const at::Tensor& parameter = named.value();
      if (endsWith(named.key(), "weight") && !parameter.requires_grad() && parameter.scalar_type() == at::kFloat &&
          parameter.dim() >= 2)
        copies_.push_back({parameter, at::Tensor(), -1, nullptr});
    }
  }
  bool remade = false;
  for (auto& copy : copies_) {
    // Re-made when the float32 weights changed (loaded, moved or edited in place) since the copy was taken.
    if (copy.version == copy.parameter._version() && copy.source == copy.parameter.data_ptr() &&
        copy.bf16.device() == copy.parameter.device())
      continue;
    copy.bf16 = copy.parameter.detach().to(at::kBFloat16);
    copy.version = copy.parameter._version();
    copy.source = copy.parameter.data_ptr();
    remade = true;
  }
  return remade;
}

FrozenBf16Copies::Swap::Swap(FrozenBf16Copies& copies) {
  for (auto& copy : copies.copies_) {
    originals_.emplace_back(copy.parameter, copy.parameter.data());
    copy.parameter.set_data(copy.bf16);
  }
}

FrozenBf16Copies::Swap::~Swap() {
  for (auto& [parameter, original] : originals_) parameter.set_data(original);
}

}  // namespace pace::train
