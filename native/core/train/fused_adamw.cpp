#include "train/fused_adamw.h"

#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define PACE_HAS_FUSED_ADAMW 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define PACE_HAS_TENSOR_LR_ADAMW 1
#endif
// The CPU kernel (with the tensor learning rate this file passes) is in 2.6's headers, the oldest 2.x checked here.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
#define PACE_HAS_CPU_FUSED_ADAMW 1
#endif

namespace pace::train {

namespace {

using Key = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;

torch::optim::AdamWParamState& moments(torch::optim::AdamW& optimizer, const at::Tensor& parameter) {
  auto& state = optimizer.state();
  const auto found = state.find(optimizerStateKey<std::decay_t<decltype(state)>>(parameter));
  return static_cast<torch::optim::AdamWParamState&>(*found->second);
}

}  // namespace

bool FusedAdamW::availableFor(const at::Tensor& parameter) {
#ifdef PACE_HAS_FUSED_ADAMW
  if (parameter.scalar_type() != at::kFloat) return false;
#ifdef PACE_HAS_CPU_FUSED_ADAMW
  if (parameter.is_cpu()) return true;
#endif
  return parameter.is_cuda();
#else
  (void)parameter;
  return false;
#endif
}

bool FusedAdamW::capturable() {
#ifdef PACE_HAS_TENSOR_LR_ADAMW
  return true;
#else
  return false;
#endif
}

void FusedAdamW::Mirror::write(double host, const at::Device& device) {
  if (value.defined() && value.device() == device) {
    if (mirrors != host) value.fill_(host);  // in place: a captured graph keeps this address
  } else {
    value = at::full({}, host, at::TensorOptions().dtype(at::kFloat).device(device));
  }
  mirrors = host;
}

bool FusedAdamW::prepare(torch::optim::AdamW& optimizer) {
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& parameter : group.params())
      if (!availableFor(parameter)) return false;
  }
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (options.amsgrad()) return false;  // not used by the trainer; the plain step handles it
    if (group.params().empty()) continue;
    learningRates_[&group.options()].write(options.lr(), group.params().front().device());
    auto& state = optimizer.state();
    for (auto& parameter : group.params()) {
      const Key key = optimizerStateKey<std::decay_t<decltype(state)>>(parameter);
      if (state.find(key) == state.end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(parameter, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(parameter, at::MemoryFormat::Preserve));
        state.emplace(key, std::move(fresh));
      }
      steps_[parameter.unsafeGetTensorImpl()].write(static_cast<double>(moments(optimizer, parameter).step()),
                                                    parameter.device());
    }
  }
  return true;
}

std::vector<at::Tensor> FusedAdamW::launch(torch::optim::AdamW& optimizer) {
  std::vector<at::Tensor> launched;
#ifdef PACE_HAS_FUSED_ADAMW
  torch::NoGradGuard noGrad;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    std::vector<at::Tensor> params, grads, expAvgs, expAvgSqs, counts;
    for (auto& parameter : group.params()) {
      if (!parameter.grad().defined()) continue;
      auto& state = moments(optimizer, parameter);
      params.push_back(parameter);
      grads.push_back(parameter.grad());
      expAvgs.push_back(state.exp_avg());
      expAvgSqs.push_back(state.exp_avg_sq());
      counts.push_back(steps_.at(parameter.unsafeGetTensorImpl()).value);
    }
    if (params.empty()) continue;
    at::_foreach_add_(counts, 1);  // the kernel reads the step it takes (torch.optim's fused path does the same)
    const auto [beta1, beta2] = options.betas();
#ifdef PACE_HAS_TENSOR_LR_ADAMW
    at::_fused_adamw_(params, grads, expAvgs, expAvgSqs, /*max_exp_avg_sqs=*/{}, counts,
                      learningRates_.at(&group.options()).value, beta1, beta2, options.weight_decay(), options.eps(),
                      /*amsgrad=*/false, /*maximize=*/false);
#else
    at::_fused_adamw_(params, grads, expAvgs, expAvgSqs, /*max_exp_avg_sqs=*/{}, counts, options.lr(), beta1, beta2,
                      options.weight_decay(), options.eps(), /*amsgrad=*/false, /*maximize=*/false);
#endif
    launched.insert(launched.end(), params.begin(), params.end());
  }
#else
  (void)optimizer;
#endif
  return launched;
}

void FusedAdamW::advance(torch::optim::AdamW& optimizer, const std::vector<at::Tensor>& launched) {
  for (const auto& parameter : launched) {
    auto& state = moments(optimizer, parameter);
    state.step(state.step() + 1);  // the kernel advanced its float copy the same way
    steps_.at(parameter.unsafeGetTensorImpl()).mirrors = static_cast<double>(state.step());
  }
}

}  // namespace pace::train
