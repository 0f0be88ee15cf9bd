#include "peft/cross_entropy.h"

#include <torch/nn/functional/loss.h>

namespace pace::peft {

at::Tensor crossEntropy(const at::Tensor& logits, const at::Tensor& targets) {
  if (targets.dim() == 2) return -(targets.to(logits.scalar_type()) * logits.log_softmax(-1)).sum(-1).mean();
  return torch::nn::functional::cross_entropy(logits, targets);
}

at::Tensor targetClasses(const at::Tensor& targets) { return targets.dim() == 2 ? targets.argmax(1) : targets; }

}  // namespace pace::peft
