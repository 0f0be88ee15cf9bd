#include "models/forward_context.h"

#include "errors.h"

namespace pace::models {

ForwardContext::ForwardContext(int64_t copies, int64_t stackBeforeBlock, at::Generator dropPathGenerator,
                               StepNoise* noise_)
    : noise(noise_),
      copies_(copies),
      stackBeforeBlock_(std::max<int64_t>(0, stackBeforeBlock)),
      stacked_(copies == 1),
      dropPathGenerator_(std::move(dropPathGenerator)) {
  if (copies < 1) throw Error(ErrorCode::Internal, "a batch needs at least one copy");
}

at::Tensor ForwardContext::duplicateBatch(const at::Tensor& x) {
  if (stacked_) return x;
  stacked_ = true;
  std::vector<int64_t> repeats(x.dim(), 1);
  repeats[0] = copies_;
  return x.repeat(repeats);
}

at::Tensor ForwardContext::duplicateBatchBefore(const at::Tensor& x, int64_t block) {
  return block == stackBeforeBlock_ ? duplicateBatch(x) : x;
}

at::Tensor ForwardContext::dropPath(const at::Tensor& branch, double rate, bool training) {
  if (rate <= 0.0 || !training) return branch;
  const double keep = 1.0 - rate;
  std::vector<int64_t> maskShape(branch.dim(), 1);
  const int64_t copies = stacked_ ? copies_ : 1;
  if (branch.size(0) % copies != 0)
    throw Error(ErrorCode::Internal, "drop path: a batch of " + std::to_string(branch.size(0)) + " is not " +
                                         std::to_string(copies) + " copies");
  maskShape[0] = branch.size(0) / copies;
  at::Tensor mask = at::empty(maskShape, branch.options());
  if (dropPathGenerator_) {
    mask.bernoulli_(keep, *dropPathGenerator_);
  } else {
    mask.bernoulli_(keep);
  }
  mask.div_(keep);
  if (copies > 1) {
    std::vector<int64_t> repeats(branch.dim(), 1);
    repeats[0] = copies;
    mask = mask.repeat(repeats);
  }
  return branch * mask;
}

}  // namespace pace::models
