#pragma once
// One training step's forward and losses under PACE and its variants: where the two views are formed, which
// noise each linear gets (through the forward context), and the consistency term. The path of σ in a step:
// Trainer::stepOnDevice → PaceObjective::losses → a ForwardContext holding the step's PaceNoise → each block →
// Adapter::forward (peft/adapter.cpp), which applies it in one of its three formulations.
#include <map>
#include <string>

#include "models/backbone.h"
#include "peft/pace.h"

namespace pace::peft {

struct PaceLosses {
  at::Tensor logits;       // the logits the cross-entropy saw (float32)
  at::Tensor targets;      // their targets (half the batch on a lazy consistency step)
  at::Tensor cls;          // cross-entropy
  at::Tensor consistency;  // the consistency term (zero without PACE)
  at::Tensor sparsity;     // μ·Σ|θ| over the adapter parameters (zero when adapterL1 is 0)
};

class PaceObjective {
 public:
  // Validates the configuration and fixes σ for every linear of `model`.
  PaceObjective(models::Backbone& model, PaceConfig config);

  const PaceConfig& config() const { return config_; }
  const std::map<std::string, double>& sigmaPerLinear() const { return sigma_; }
  // The first block that gets noise (blockStart, or the family's default).
  int64_t firstNoisyBlock() const { return firstNoisyBlock_; }

  // Whether step `iteration` of the lazy variant is one of its consistency steps (on half the batch).
  bool lazyPaceStep(int64_t iteration) const {
    return config_.active() && config_.variant == PaceVariant::Lazy && iteration % config_.lazyInterval == 0;
  }

  // Throws OptionError for replayed noise on a linear that gets none.
  void checkReplay(const std::map<std::string, at::Tensor>& replay) const;

  // The forward of a training-mode model and its losses. Noise comes from `noiseGenerator` (or `replay`,
  // ε per linear), stochastic depth from `dropPathGenerator`; `iteration` selects the lazy variant's
  // consistency steps; `indices` are the samples' places in the training set (the fast variant).
  PaceLosses losses(models::Backbone& model, const at::Tensor& images, const at::Tensor& targets,
                    const at::Tensor& indices, const std::map<std::string, at::Tensor>& replay,
                    at::Generator& noiseGenerator, at::Generator& dropPathGenerator, int64_t iteration);

  // The noise draws of the last step, by linear (replaying them reproduces the step).
  const std::map<std::string, at::Tensor>& lastNoise() const { return lastNoise_; }

  // The fast variant's logits of each sample's previous visit ([datasetSize, classes]; undefined before the
  // first fast step), part of a training checkpoint.
  const at::Tensor& history() const { return history_; }
  void setHistory(at::Tensor history) { history_ = std::move(history); }
  // The fast variant: records these samples' logits as their latest visit (data-parallel ranks share theirs).
  void rememberLogits(const at::Tensor& indices, const at::Tensor& logits);
  // Puts back the rows the last `losses` replaced in the history (a step refused before its update leaves the
  // trainer's whole state as it was); nothing when it replaced none.
  void forgetLastLogits();

 private:
  // The forward and the cross-entropy and consistency terms of `losses`.
  PaceLosses forwardLosses(models::Backbone& model, const at::Tensor& images, const at::Tensor& targets,
                           const at::Tensor& indices, const std::map<std::string, at::Tensor>& replay,
                           at::Generator& noiseGenerator, at::Generator& dropPathGenerator, int64_t iteration);

  // The history on `device` (made there at the first fast step, or moved there once).
  at::Tensor& historyOn(const at::Device& device, int64_t classes);

  PaceConfig config_;
  std::vector<at::Tensor> adapterParameters_;  // what the ℓ1 term sums over
  std::map<std::string, double> sigma_;
  int64_t firstNoisyBlock_;
  std::map<std::string, at::Tensor> lastNoise_;
  at::Tensor history_;
  at::Tensor replacedIndices_, replacedRows_;  // what the last fast step's rememberLogits overwrote
};

}  // namespace pace::peft
