#include "train/optimizer_placement.h"

#include <type_traits>

#include "train/fused_adamw.h"

namespace pace::train {

void followParameterDevices(torch::optim::AdamW& optimizer) {
  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    for (auto& parameter : group.params()) {
      const at::Device device = parameter.device();
      if (parameter.grad().defined() && parameter.grad().device() != device) parameter.mutable_grad() = at::Tensor();
      const auto found = state.find(optimizerStateKey<std::decay_t<decltype(state)>>(parameter));
      if (found == state.end()) continue;
      auto& moments = static_cast<torch::optim::AdamWParamState&>(*found->second);
      const auto there = [&](const at::Tensor& moment) { return moment.defined() ? moment.to(device) : moment; };
      moments.exp_avg(there(moments.exp_avg()));
      moments.exp_avg_sq(there(moments.exp_avg_sq()));
      moments.max_exp_avg_sq(there(moments.max_exp_avg_sq()));
    }
  }
}

}  // namespace pace::train
