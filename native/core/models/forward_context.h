#pragma once
// What one forward carries besides its input, passed by reference down every module's forward: the training
// step's PACE noise, whether adapters are bypassed, the stacked copies of the batch and the stochastic-depth
// generator. A default-constructed context is plain inference. Following σ from the trainer to the layer that
// applies it means following this object (train/trainer.cpp → peft/pace_objective.cpp → a block → a linear).
#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace pace::models {

// The noise of one PACE step, as the three places that apply it ask for it (implemented by peft::PaceNoise).
// `linear` is the linear's timm path.
class StepNoise {
 public:
  virtual ~StepNoise() = default;
  // Whether the noise is a per-row multiplier z of the adapter output, which the fused PACE linear
  // (peft/pace_linear.h) folds into its weights.
  virtual bool perRowMultiplier() const = 0;
  // In the fused PACE linear: z [rows, out] for a linear whose output has `outputShape`; undefined where σ is 0.
  virtual at::Tensor rowMultiplier(const std::string& linear, at::IntArrayRef outputShape,
                                   const at::TensorOptions& options) = 0;
  // In an adapted linear, for the other noise kinds and shapes: the noisy adapter output a(x).
  virtual at::Tensor noisyAdapterOutput(const std::string& linear, const at::Tensor& adapterOutput) = 0;
  // A linear's noisy whole output: the classifier head's (whose whole output is trainable, its frozen part being
  // zero), and with onWholeOutput() every adapted linear's (PACE_h).
  virtual at::Tensor noisyWholeOutput(const std::string& linear, const at::Tensor& output) = 0;
  // Whether adapted linears take the noise on their whole output h instead of the adapter's output.
  virtual bool onWholeOutput() const = 0;
};

class ForwardContext {
 public:
  // Inference: one copy, no noise, adapters on, stochastic depth from the global generator.
  ForwardContext() = default;
  // Training: `copies` stacked copies of the batch (PACE's views) from block `stackBeforeBlock` on, and the
  // stochastic-depth masks drawn from `dropPathGenerator`. Before the first noisy block every copy would compute
  // the same values, so the backbone computes them once and stacks them there (or before the head at the latest).
  ForwardContext(int64_t copies, int64_t stackBeforeBlock, at::Generator dropPathGenerator, StepNoise* noise);

  // PACE's noise for this forward (null: none).
  StepNoise* noise = nullptr;
  // Adapted linears compute only their frozen part: the pretrained model's output (FP-distance, FPA).
  bool adaptersBypassed = false;
  // PACE's stochastic depth (the reference's SharableDropPath, in every PACE run): each mask is divided by its mean
  // over the batch (+ 1e-12) after the 1 / (1 − rate), so the kept samples' branches sum to the batch size.
  bool renormaliseDropPath = false;

  // Stacks the copies of `x` along the batch axis if that has not happened yet in this forward.
  at::Tensor duplicateBatch(const at::Tensor& x);
  // The same, when `block` is the block the copies are stacked before.
  at::Tensor duplicateBatchBefore(const at::Tensor& x, int64_t block);
  // Stochastic depth: in training each sample's branch is kept with probability 1 - rate and scaled by
  // 1 / (1 - rate); otherwise the branch is returned as it is. Every copy of a sample shares its mask, so the
  // views differ only by their adapter noise.
  at::Tensor dropPath(const at::Tensor& branch, double rate, bool training);
  // The same draw as the per-sample scale [rows] of a branch with `rows` rows in `options`' dtype (keep / (1 −
  // rate) or 0, renormalised when asked); undefined where nothing is dropped. For a linear that folds the scaling
  // into its output pass.
  at::Tensor dropPathScale(int64_t rows, double rate, bool training, const at::TensorOptions& options);

 private:
  int64_t copies_ = 1;
  int64_t stackBeforeBlock_ = 0;
  bool stacked_ = true;
  std::optional<at::Generator> dropPathGenerator_;
};

}  // namespace pace::models
