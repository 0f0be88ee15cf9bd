#include "train/gradients.h"

#include <cmath>

namespace pace::train {

double gradientNorm(const std::vector<NamedTensor>& parameters) {
  double squares = 0;
  for (const auto& named : parameters) {
    if (named.tensor.grad().defined()) squares += named.tensor.grad().pow(2).sum().item<double>();
  }
  return std::sqrt(squares);
}

void clipGradientNorm(const std::vector<NamedTensor>& parameters, double maxNorm) {
  std::vector<at::Tensor> norms;
  for (const auto& named : parameters) {
    if (named.tensor.grad().defined()) norms.push_back(named.tensor.grad().detach().to(at::kFloat).norm());
  }
  if (norms.empty()) return;
  const at::Tensor total = at::stack(norms).norm();
  const at::Tensor scale = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& named : parameters) {
    if (named.tensor.grad().defined()) named.tensor.mutable_grad().mul_(scale.to(named.tensor.grad().scalar_type()));
  }
}

}  // namespace pace::train
