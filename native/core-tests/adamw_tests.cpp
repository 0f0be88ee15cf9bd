// The fused AdamW (train/fused_adamw.h) against libtorch's per-parameter AdamW: same updates, same state.
#include <cmath>

#include "check.h"
#include "train/fused_adamw.h"

namespace pace::tests {
namespace {

void fusedAdamWMatchesThePlainStep(at::DeviceType device) {
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  at::manual_seed(5);
  std::vector<at::Tensor> plain, fused;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 5}, {300}, {3, 4, 2}}) {
    const at::Tensor start = at::randn(shape, options);
    plain.push_back(start.clone().set_requires_grad(true));
    fused.push_back(start.clone().set_requires_grad(true));
  }
  const auto adamw = torch::optim::AdamWOptions(3e-3).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.05);
  torch::optim::AdamW reference(plain, adamw);
  torch::optim::AdamW held(fused, adamw);
  train::FusedAdamW kernel;
  for (int step = 0; step < 4; ++step) {
    // A new learning rate every step: the fused kernel reads it from a device mirror written in place.
    for (auto* optimizer : {&reference, &held}) {
      for (auto& group : optimizer->param_groups())
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(3e-3 / (1 + step));
    }
    for (size_t i = 0; i < plain.size(); ++i) {
      const at::Tensor grad = at::randn(plain[i].sizes(), options);
      plain[i].mutable_grad() = grad.clone();
      fused[i].mutable_grad() = grad.clone();
    }
    reference.step();
    check(kernel.prepare(held), "the fused step was prepared");
    const std::vector<at::Tensor> launched = kernel.launch(held);
    check(launched.size() == fused.size(), "every parameter was updated");
    kernel.advance(held, launched);
  }
  for (size_t i = 0; i < plain.size(); ++i) {
    const double error = (plain[i] - fused[i]).abs().max().item<double>() / plain[i].abs().max().item<double>();
    check(error < 1e-6, "parameter " + std::to_string(i) + " differs by " + std::to_string(error));
  }
  auto& a = reference.state();
  auto& b = held.state();
  for (size_t i = 0; i < plain.size(); ++i) {
    const auto& x = static_cast<torch::optim::AdamWParamState&>(
        *a.at(train::optimizerStateKey<std::decay_t<decltype(a)>>(plain[i])));
    const auto& y = static_cast<torch::optim::AdamWParamState&>(
        *b.at(train::optimizerStateKey<std::decay_t<decltype(b)>>(fused[i])));
    check(x.step() == 4 && y.step() == 4, "both count four steps");
    check((x.exp_avg_sq() - y.exp_avg_sq()).abs().max().item<double>() <=
              1e-6 * x.exp_avg_sq().abs().max().item<double>(),
          "second moments agree");
  }
}

}  // namespace

TestList fusedAdamWTests() {
  return {{"fused AdamW matches libtorch's AdamW step for step, the learning rate changing (CPU)",
           [] {
             skipUnless(train::FusedAdamW::availableFor(at::empty({1})), "the CPU's fused AdamW needs libtorch >= 2.6");
             fusedAdamWMatchesThePlainStep(at::kCPU);
           }},
          {"fused AdamW matches libtorch's AdamW step for step, the learning rate changing (CUDA)", [] {
             skipUnless(at::hasCUDA(), "no CUDA device visible");
             skipUnless(train::FusedAdamW::availableFor(at::empty({1}, at::TensorOptions().device(at::kCUDA))),
                        "the fused AdamW needs libtorch >= 2.1");
             fusedAdamWMatchesThePlainStep(at::kCUDA);
           }}};
}

}  // namespace pace::tests
