#pragma once
// bf16 training: the frozen parameters' bfloat16 copies, made once and swapped in for each step's forward and
// backward, as autocast would cast them at every use.
#include <torch/nn/module.h>

#include <vector>

namespace pace::train {

class FrozenBf16Copies {
 public:
  // Makes (or re-makes, when the float32 weights changed since) the copies of `model`'s frozen weights; true
  // when some copy is new (a captured step graph reads the old ones).
  bool refresh(torch::nn::Module& model);

  // For its lifetime the frozen parameters hold their bfloat16 copies; the float32 data comes back at the end.
  class Swap {
   public:
    explicit Swap(FrozenBf16Copies& copies);
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    std::vector<std::pair<at::Tensor, at::Tensor>> originals_;
  };

 private:
  struct Copy {
    at::Tensor parameter, bf16;
    int64_t version = -1;
    const void* source = nullptr;
  };
  std::vector<Copy> copies_;
};

}  // namespace pace::train
