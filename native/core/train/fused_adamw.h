#pragma once
// AdamW through libtorch's fused multi-tensor kernel (`_fused_adamw_`, libtorch ≥ 2.1, CUDA): one launch per
// parameter group instead of about eight per parameter. It reads and updates the moments and step counts kept
// in a torch::optim::AdamW's state, so checkpoints and the plain per-parameter step stay interchangeable.
#include <torch/optim/adamw.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>

namespace pace::train {

// libtorch keys an optimizer's per-parameter state by the parameter's TensorImpl: as a string in 1.x, as a
// pointer in newer releases. This gives the key in whichever form this libtorch uses.
template <typename StateMap>
typename StateMap::key_type optimizerStateKey(const at::Tensor& parameter) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;  // what c10::guts::to_string (gone from newer releases) printed: the address
    key << parameter.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

class FusedAdamW {
 public:
  // Whether this libtorch has the fused kernel for parameters like `parameter`.
  static bool availableFor(const at::Tensor& parameter);
  // One update of every parameter with a gradient; false (nothing done) when the kernel is not available
  // for them, in which case the caller steps the optimizer itself.
  bool step(torch::optim::AdamW& optimizer);

 private:
  // The kernel reads step counts from float32 device tensors; these mirror the state's int64 counts.
  struct DeviceStep {
    at::Tensor count;
    int64_t mirrors = -1;
  };
  std::unordered_map<const void*, DeviceStep> steps_;
};

}  // namespace pace::train
