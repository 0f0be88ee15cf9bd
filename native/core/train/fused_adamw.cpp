#include "train/fused_adamw.h"

#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define PACE_HAS_FUSED_ADAMW 1
#endif

namespace pace::train {

bool FusedAdamW::availableFor(const at::Tensor& parameter) {
#ifdef PACE_HAS_FUSED_ADAMW
  return parameter.is_cuda() && parameter.scalar_type() == at::kFloat;
#else
  (void)parameter;
  return false;
#endif
}

bool FusedAdamW::step(torch::optim::AdamW& optimizer) {
#ifdef PACE_HAS_FUSED_ADAMW
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& parameter : group.params())
      if (parameter.grad().defined() && !availableFor(parameter)) return false;
  }
  torch::NoGradGuard noGrad;
  auto& state = optimizer.state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (options.amsgrad()) return false;  // not used by the trainer; the plain step handles it
    std::vector<at::Tensor> params, grads, expAvgs, expAvgSqs, counts;
    std::vector<torch::optim::AdamWParamState*> states;
    for (auto& parameter : group.params()) {
      if (!parameter.grad().defined()) continue;
      const Key key = optimizerStateKey<std::decay_t<decltype(state)>>(parameter);
      auto found = state.find(key);
      if (found == state.end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(parameter, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(parameter, at::MemoryFormat::Preserve));
        found = state.emplace(key, std::move(fresh)).first;
      }
      auto& moments = static_cast<torch::optim::AdamWParamState&>(*found->second);
      DeviceStep& count = steps_[parameter.unsafeGetTensorImpl()];
      if (count.mirrors != moments.step() || !count.count.defined() || count.count.device() != parameter.device()) {
        count.count = at::full({}, static_cast<double>(moments.step()),
                               at::TensorOptions().dtype(at::kFloat).device(parameter.device()));
        count.mirrors = moments.step();
      }
      params.push_back(parameter);
      grads.push_back(parameter.grad());
      expAvgs.push_back(moments.exp_avg());
      expAvgSqs.push_back(moments.exp_avg_sq());
      counts.push_back(count.count);
      states.push_back(&moments);
    }
    if (params.empty()) continue;
    at::_foreach_add_(counts, 1);  // the kernel reads the step it takes (torch.optim's fused path does the same)
    at::_fused_adamw_(params, grads, expAvgs, expAvgSqs, /*max_exp_avg_sqs=*/{}, counts, options.lr(),
                      std::get<0>(options.betas()), std::get<1>(options.betas()), options.weight_decay(), options.eps(),
                      /*amsgrad=*/false, /*maximize=*/false);
    for (size_t i = 0; i < params.size(); ++i) {
      states[i]->step(states[i]->step() + 1);  // the kernel advanced its float copy the same way
      steps_[params[i].unsafeGetTensorImpl()].mirrors = states[i]->step();
    }
  }
  return true;
#else
  (void)optimizer;
  return false;
#endif
}

}  // namespace pace::train
