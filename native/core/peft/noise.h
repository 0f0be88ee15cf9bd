#pragma once
// PACE's noise on adapter outputs. The reference draws one value per row of the linear's input and output
// channel, shared by all tokens of that row: ε of shape [rows, 1, ..., out] (rows are samples in ViT, and
// windows in Swin's attention). The 'BTC' shape draws one value per token instead.
#include <ATen/ATen.h>

#include <map>
#include <string>

#include "models/forward_context.h"

namespace pace::peft {

enum class NoiseKind { Multiplicative, Additive, Dropout };
enum class NoiseShape { PerRow, PerToken };
// Where an adapted linear takes the noise (see PaceConfig::noiseOn).
enum class NoiseTarget { AdapterOutput, WholeOutput };

class PaceNoise : public models::StepNoise {
 public:
  // sigma: σ per linear path (absent or 0: no noise there). replay: ε per linear path to use instead of
  // drawing (the fixtures' `noise.*`); its shapes are checked.
  PaceNoise(std::map<std::string, double> sigma, NoiseKind kind, NoiseShape shape, at::Generator generator,
            std::map<std::string, torch::Tensor> replay = {}, NoiseTarget target = NoiseTarget::AdapterOutput);

  // The noisy version of a linear's adapter output (or of the head's whole output):
  //   multiplicative (PACE): a ⊙ (1 + σ·ε);  additive: a + σ·ε;  dropout: a ⊙ Bernoulli(1 − σ) / (1 − σ).
  torch::Tensor noisyAdapterOutput(const std::string& linear, const torch::Tensor& adapterOutput) override;
  torch::Tensor noisyWholeOutput(const std::string& linear, const torch::Tensor& output) override;
  bool onWholeOutput() const override { return target_ == NoiseTarget::WholeOutput; }

  // Whether the noise is a per-row multiplier z of the adapter output (multiplicative or dropout noise drawn
  // per row), which the fused PACE linear (peft/pace_linear.h) folds into its weights.
  bool perRowMultiplier() const override;
  // That multiplier for a linear whose output has `outputShape`, as [rows, out]: 1 + σ·ε, or the dropout mask
  // / (1 − σ), drawn (or replayed) exactly as noisyAdapterOutput() draws it. Undefined where σ is 0.
  torch::Tensor rowMultiplier(const std::string& linear, at::IntArrayRef outputShape,
                              const at::TensorOptions& options) override;

  // The draws used so far in this step, by linear (ε, or the dropout mask).
  const std::map<std::string, torch::Tensor>& draws() const { return draws_; }

 private:
  double sigmaOf(const std::string& linear) const;
  // ε (or the dropout mask) for an output of `outputShape`, recorded in draws_.
  torch::Tensor draw(const std::string& linear, double sigma, at::IntArrayRef outputShape,
                     const at::TensorOptions& options);

  std::map<std::string, double> sigma_;
  NoiseKind kind_;
  NoiseShape shape_;
  NoiseTarget target_;
  at::Generator generator_;
  std::map<std::string, torch::Tensor> replay_;
  std::map<std::string, torch::Tensor> draws_;
};

}  // namespace pace::peft
