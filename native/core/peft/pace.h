#pragma once
// PACE's configuration and depth schedule (the paper's Eq. and the reference implementation): noise on adapter
// outputs with σ falling linearly with depth, and λ·mean_batch Σ_classes (f₁ − f₂)² added to the cross-entropy.
// How a step forms its two views is peft/pace_objective.h; the noise draw is peft/noise.h.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/backbone.h"
#include "peft/noise.h"

namespace pace::peft {

enum class SigmaSchedule { Decreasing, Shared, Increasing };

// How the consistency term is formed (the reference's pace / lazy-half / fast, and the paper's FPA ablation):
//   Pace: both copies of the whole batch in one forward, every step;
//   Lazy: every lazyInterval-th step, both copies of the batch's first half; other steps one noisy forward;
//   Fast: one noisy forward, consistency against the logits kept from the sample's previous visit (zeros at first);
//   Fpa:  one noisy forward, consistency against the frozen backbone's logits (adapters bypassed, same head);
//   Noise: the paper's "Noise" ablation: one noisy forward and no consistency term (λ must be 0).
enum class PaceVariant { Pace, Lazy, Fast, Fpa, Noise };

// The option names users write, one table each; an unknown name is an OptionError listing the known ones.
NoiseKind noiseKindFromName(const std::string& name);          // multiplicative, additive, dropout
NoiseShape noiseShapeFromName(const std::string& name);        // BC, BTC
SigmaSchedule sigmaScheduleFromName(const std::string& name);  // decreasing, shared, increasing
PaceVariant paceVariantFromName(const std::string& name);      // pace, lazy, fast, fpa, noise
NoiseTarget noiseTargetFromName(const std::string& name);      // adapter, h
// The names of the same tables, for reporting the settings in force.
std::string nameOf(NoiseKind kind);
std::string nameOf(NoiseShape shape);
std::string nameOf(SigmaSchedule schedule);
std::string nameOf(PaceVariant variant);
std::string nameOf(NoiseTarget target);

// The defaults here are the reference's and the only copy of them: the addon and TypeScript start from these.
struct PaceConfig {
  double sigma = 0.0;                 // σ of the first noisy block
  double lambda = 0.0;                // weight of the consistency loss
  std::optional<int64_t> blockStart;  // blocks before this get no noise; absent: the family's default
  NoiseKind kind = NoiseKind::Multiplicative;
  NoiseShape shape = NoiseShape::PerRow;
  SigmaSchedule schedule = SigmaSchedule::Decreasing;
  PaceVariant variant = PaceVariant::Pace;
  int64_t lazyInterval = 1;  // train.py's --lazy_interval (pace_ops.py's own default of 2 is always overridden)
  int64_t datasetSize = 0;   // Fast: the number of training samples (indices run over [0, datasetSize))
  double adapterL1 = 0.0;  // μ of the ℓ1-sparsity comparison: μ·Σ|θ| over the adapter parameters joins the loss
  // Where the noise goes: the adapter's output Δh (PACE), or the adapted linear's whole output h = W₀x + Δh (the
  // paper's PACE_h ablation). The head's output is whole either way.
  NoiseTarget noiseOn = NoiseTarget::AdapterOutput;
  // Pace and lazy: how many noisy copies of the batch (the paper's M networks, Fig. 5); the consistency term is the
  // mean of the pairwise terms, which for 2 copies is the reference's.
  int64_t copies = 2;

  bool active() const { return sigma > 0.0 || lambda > 0.0; }  // noise or consistency (ℓ1 alone is not PACE)
  void validate() const;                                       // throws OptionError for σ < 0, λ < 0, ...
};

// σ for every Linear by path. Noise units are the blocks in order, then the head; the first blockStart get
// 0 and the n others σ·(n−k)/n for k = 0..n−1 (decreasing), σ (shared) or σ·(k+1)/n (increasing).
std::map<std::string, double> sigmaPerLinear(models::Backbone& model, const PaceConfig& config);

// The first block that gets noise: blockStart, or the family's default.
int64_t firstNoisyBlock(const models::Backbone& model, const PaceConfig& config);

// mean over the batch of the sum over classes of (a − b)².
torch::Tensor consistencyLoss(const torch::Tensor& a, const torch::Tensor& b);
// The consistency of `copies` stacked views [copies·B, C]: the mean over pairs i < j of consistencyLoss(fᵢ, fⱼ).
torch::Tensor consistencyAmong(const torch::Tensor& views, int64_t copies);

}  // namespace pace::peft
