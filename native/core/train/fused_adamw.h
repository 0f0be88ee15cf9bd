#pragma once
// AdamW through libtorch's fused multi-tensor kernel (`_fused_adamw_`: CUDA from libtorch 2.1, the CPU from 2.6):
// one launch per parameter group instead of about eight per parameter. It reads and updates the moments and step counts
// kept in a torch::optim::AdamW's state, so checkpoints and the plain per-parameter step stay interchangeable.
#include <torch/optim/adamw.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

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
  // Whether launch() can run inside a CUDA graph: the kernel reads the learning rate from a device tensor
  // (libtorch ≥ 2.4 here, the release whose graphs also take the trainer's generators).
  static bool capturable();

  // One update of every parameter with a gradient, in the three parts a captured step needs (an eager step
  // calls them in a row). prepare(), outside any capture, makes every tensor the kernel touches and writes the
  // host's learning rate and step counts into their device mirrors (in place, so a captured graph keeps reading
  // them); false when the kernel is not available for these parameters, in which case the caller steps the
  // optimizer itself. launch() queues the update alone (device work only) and returns the parameters it
  // updated; advance() then counts their step on the host, as the kernel did on the device.
  bool prepare(torch::optim::AdamW& optimizer);
  std::vector<at::Tensor> launch(torch::optim::AdamW& optimizer);
  void advance(torch::optim::AdamW& optimizer, const std::vector<at::Tensor>& launched);

 private:
  // A device tensor mirroring a host value the kernel reads (a step count, a learning rate).
  struct Mirror {
    at::Tensor value;
    double mirrors = -1;
    void write(double host, const at::Device& device);
  };
  std::unordered_map<const void*, Mirror> steps_;          // by parameter
  std::unordered_map<const void*, Mirror> learningRates_;  // by parameter group (its options)
};

}  // namespace pace::train
