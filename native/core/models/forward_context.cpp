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
  const at::Tensor scale = dropPathScale(branch.size(0), rate, training, branch.options());
  if (!scale.defined()) return branch;
  std::vector<int64_t> shape(branch.dim(), 1);
  shape[0] = branch.size(0);
  return branch * scale.view(shape);
}

at::Tensor ForwardContext::dropPathScale(int64_t rows, double rate, bool training, const at::TensorOptions& options) {
  if (rate <= 0.0 || !training) return {};
  const double keep = 1.0 - rate;
  const int64_t copies = stacked_ ? copies_ : 1;
  if (rows % copies != 0)
    throw Error(ErrorCode::Internal,
                "drop path: a batch of " + std::to_string(rows) + " is not " + std::to_string(copies) + " copies");
  at::Tensor mask = at::empty({rows / copies}, options);
  if (dropPathGenerator_) {
    mask.bernoulli_(keep, *dropPathGenerator_);
  } else {
    mask.bernoulli_(keep);
  }
  mask.div_(keep);
  // The mean over the stacked copies is the mean over these rows, which they repeat.
  if (renormaliseDropPath) mask.div_(mask.mean().add_(1e-12));
  return copies > 1 ? mask.repeat({copies}) : mask;
}

}  // namespace pace::models
