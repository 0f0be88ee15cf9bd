#pragma once
// The update direction of SAM (Foret et al., 2021) and of the gradient-norm penalty GP (Zhao et al., 2022), the
// paper's comparisons: a second gradient at θ + r·g/‖g‖, where g is the step's gradient, then the update uses
//   (1 − α)·g(θ) + α·g(θ + r·g/‖g‖),
// with SAM: r = ρ, α = 1; GP (penalty γ·‖∇L‖ on the loss, by this finite difference): r = radius, α = γ / r.
// The second forward replays the first's noise and stochastic-depth masks, so both gradients are of one loss.
#include <ATen/core/Tensor.h>

#include <vector>

#include "io/safetensors.h"

namespace pace::train {

struct SharpnessConfig {
  double radius = 0;  // 0: off
  double mix = 1;     // α
  bool active() const { return radius > 0; }
};

class SharpnessStep {
 public:
  // Keeps the current gradients g and moves the parameters by r·g/‖g‖ (‖·‖ over all of them together).
  SharpnessStep(const std::vector<NamedTensor>& trainable, const SharpnessConfig& config);
  // After the gradients at the moved point were computed: moves the parameters back and leaves
  // (1 − α)·g + α·(those gradients) as the gradients.
  void finish();
  // Not finished (the second pass threw: a non-finite loss, say), the parameters are moved back all the same.
  ~SharpnessStep();
  SharpnessStep(const SharpnessStep&) = delete;
  SharpnessStep& operator=(const SharpnessStep&) = delete;

 private:
  const std::vector<NamedTensor>& trainable_;
  SharpnessConfig config_;
  std::vector<at::Tensor> first_;     // g, one per parameter (undefined where a parameter had none)
  std::vector<at::Tensor> original_;  // θ, restored exactly (θ + e − e is not θ in floating point)
  bool restored_ = false;
  void restore();
};

}  // namespace pace::train
