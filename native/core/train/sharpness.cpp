#include "train/sharpness.h"

#include <ATen/ATen.h>

namespace pace::train {

SharpnessStep::SharpnessStep(const std::vector<NamedTensor>& trainable, const SharpnessConfig& config)
    : trainable_(trainable), config_(config) {
  at::NoGradGuard noGrad;
  std::vector<at::Tensor> squares;
  for (const auto& named : trainable_) {
    const at::Tensor& gradient = named.tensor.grad();
    first_.push_back(gradient.defined() ? gradient.detach().clone() : at::Tensor());
    if (gradient.defined()) squares.push_back(gradient.detach().to(at::kFloat).pow(2).sum());
  }
  // As the SAM reference: a tiny constant keeps a zero gradient from dividing by zero (it then moves nothing).
  const at::Tensor norm = squares.empty() ? at::Tensor() : at::stack(squares).sum().sqrt();
  for (size_t i = 0; i < trainable_.size(); ++i) {
    original_.push_back(first_[i].defined() ? trainable_[i].tensor.detach().clone() : at::Tensor());
    if (!first_[i].defined()) continue;
    const at::Tensor scale = (config_.radius / (norm + 1e-12)).to(first_[i].scalar_type());
    trainable_[i].tensor.detach().add_(first_[i] * scale);
  }
}

void SharpnessStep::restore() {
  at::NoGradGuard noGrad;
  for (size_t i = 0; i < trainable_.size(); ++i) {
    if (original_[i].defined()) trainable_[i].tensor.detach().copy_(original_[i]);
  }
  restored_ = true;
}

SharpnessStep::~SharpnessStep() {
  if (restored_) return;
  try {
    restore();
  } catch (...) {  // a destructor must not throw; the error that unwound the step is the one to report
  }
}

void SharpnessStep::finish() {
  restore();
  at::NoGradGuard noGrad;
  for (size_t i = 0; i < trainable_.size(); ++i) {
    const at::Tensor& parameter = trainable_[i].tensor;
    if (!first_[i].defined() || !parameter.grad().defined()) continue;
    if (config_.mix != 1.0) parameter.mutable_grad().mul_(config_.mix).add_(first_[i], 1.0 - config_.mix);
  }
}

}  // namespace pace::train
