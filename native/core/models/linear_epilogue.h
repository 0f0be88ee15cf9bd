#pragma once
// What a linear may fold into the pass that writes its output: the GELU after it (the MLP's fc1), or the residual
// add with stochastic depth after it (a block's proj and fc2: residual + dropPath(linear(x))). The noisy linear of
// a PACE step folds it into its epilogue kernel (peft/pace_linear.h); every other path runs apply(), the ops a
// plain forward would run, so results there are unchanged.
#include <ATen/ATen.h>

namespace pace::models {

class ForwardContext;

class LinearEpilogue {
 public:
  LinearEpilogue() = default;  // nothing folded in
  static LinearEpilogue gelu();
  // residual + s ⊙ output, s the stochastic-depth scale of each row (sample) drawn from `context` at `dropPathRate`
  // (none when the rate is 0 or outside training).
  static LinearEpilogue residualAdd(at::Tensor residual, ForwardContext& context, double dropPathRate, bool training);

  bool none() const { return !gelu_ && !residual_.defined(); }
  bool isGelu() const { return gelu_; }
  const at::Tensor& residual() const { return residual_; }

  // The linear's `output` with the epilogue applied by ordinary ops (drawing the stochastic-depth mask).
  at::Tensor apply(const at::Tensor& output) const;
  // For a fused epilogue: the stochastic-depth scale [rows] in `options`, drawn as apply() would draw it
  // (undefined: every row kept whole). Call it or apply(), once per forward.
  at::Tensor rowScale(int64_t rows, const at::TensorOptions& options) const;

 private:
  bool gelu_ = false;
  at::Tensor residual_;
  ForwardContext* context_ = nullptr;
  double dropPathRate_ = 0;
  bool training_ = false;
};

}  // namespace pace::models
