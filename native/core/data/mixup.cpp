#include "data/mixup.h"

#include <algorithm>
#include <cmath>

#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

void MixupConfig::validate() const {
  if (!(mixupAlpha >= 0) || !std::isfinite(mixupAlpha)) throw OptionError("mixup.mixupAlpha must be >= 0");
  if (!(cutmixAlpha >= 0) || !std::isfinite(cutmixAlpha)) throw OptionError("mixup.cutmixAlpha must be >= 0");
  if (mixupAlpha == 0 && cutmixAlpha == 0)
    throw OptionError("mixup needs mixupAlpha > 0 or cutmixAlpha > 0 (both are 0)");
  if (!(prob >= 0 && prob <= 1)) throw OptionError("mixup.prob must be in [0, 1]");
  if (!(switchProb >= 0 && switchProb <= 1)) throw OptionError("mixup.switchProb must be in [0, 1]");
  if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw OptionError("mixup.labelSmoothing must be in [0, 1)");
}

at::Tensor mixupTargets(const at::Tensor& labels, int64_t numClasses, double lambda, double smoothing) {
  if (labels.scalar_type() != at::kLong || labels.dim() != 1)
    throw ShapeError("mixup needs int64 labels [B]; got " + dtypeName(labels.scalar_type()) + " " +
                     shapeToString(labels.sizes().vec()));
  // The soft targets are [B, numClasses]: a count beyond any classifier's (2^24) would only exhaust memory.
  if (numClasses < 1 || numClasses > (int64_t{1} << 24))
    throw OptionError("mixup needs numClasses from 1 to 16777216; got " + std::to_string(numClasses));
  if (labels.numel() > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= numClasses))
    throw InputError("mixup's labels must lie in [0, " + std::to_string(numClasses) + ")");
  const double off = smoothing / static_cast<double>(numClasses);
  const double on = 1.0 - smoothing + off;
  const auto oneHot = [&](const at::Tensor& y) {
    return at::full({y.size(0), numClasses}, off, labels.options().dtype(at::kFloat)).scatter_(1, y.view({-1, 1}), on);
  };
  return oneHot(labels) * lambda + oneHot(labels.flip(0)) * (1.0 - lambda);
}

MixupResult mixupBatch(const at::Tensor& images, const at::Tensor& labels, int64_t numClasses,
                       const MixupConfig& config, at::Generator generator) {
  config.validate();
  if (!at::isFloatingType(images.scalar_type()) || images.dim() != 4)
    throw ShapeError("mixup needs floating-point images [B, C, H, W]; got " + dtypeName(images.scalar_type()) + " " +
                     shapeToString(images.sizes().vec()));
  if (labels.dim() != 1 || labels.size(0) != images.size(0))
    throw ShapeError("mixup has " + std::to_string(images.size(0)) + " images but " + std::to_string(labels.numel()) +
                     " labels");
  const auto doubles = at::TensorOptions().dtype(at::kDouble);
  // Whether to mix, mixup or CutMix, the box's centre row and column, then the four draws of two Betas below.
  const at::Tensor uniforms = at::empty({8}, doubles).uniform_(0.0, 1.0, generator);
  // Beta(α, α) = G₁ / (G₁ + G₂) with G ~ Gamma(α) = Gamma(α + 1)·U^(1/α), taken in logs: for a small α both
  // Gammas underflow to the same tiny number (λ exactly 0.5) where numpy's Beta puts nearly all of λ at 0 or 1.
  // An unused α of 0 draws too (as α 1), so every batch draws alike.
  const auto used = [](double alpha) { return alpha > 0 ? alpha : 1.0; };
  const double alphas[4] = {used(config.mixupAlpha), used(config.mixupAlpha), used(config.cutmixAlpha),
                            used(config.cutmixAlpha)};
  const at::Tensor gammas =
      at::_standard_gamma(at::tensor({alphas[0] + 1, alphas[1] + 1, alphas[2] + 1, alphas[3] + 1}, doubles), generator);
  const double* u = uniforms.data_ptr<double>();
  double logGamma[4];
  for (int i = 0; i < 4; ++i) logGamma[i] = std::log(gammas[i].item<double>()) + std::log(u[4 + i]) / alphas[i];
  // G₁ / (G₁ + G₂) = 1 / (1 + exp(log G₂ − log G₁))
  const auto beta = [&](int first) { return 1.0 / (1.0 + std::exp(logGamma[first + 1] - logGamma[first])); };

  MixupResult result;
  double lambda = 1.0;
  bool cutmix = false;
  if (u[0] < config.prob) {
    if (config.mixupAlpha > 0 && config.cutmixAlpha > 0) {
      cutmix = u[1] < config.switchProb;
    } else {
      cutmix = config.cutmixAlpha > 0;
    }
    lambda = cutmix ? beta(2) : beta(0);
  }
  result.images = images;
  if (lambda != 1.0) {
    if (cutmix) {
      const int64_t h = images.size(2), w = images.size(3);
      const double ratio = std::sqrt(1.0 - lambda);
      const int64_t cutH = static_cast<int64_t>(static_cast<double>(h) * ratio);
      const int64_t cutW = static_cast<int64_t>(static_cast<double>(w) * ratio);
      const int64_t cy = std::min(h - 1, static_cast<int64_t>(u[2] * static_cast<double>(h)));  // randint(0, h)
      const int64_t cx = std::min(w - 1, static_cast<int64_t>(u[3] * static_cast<double>(w)));
      const int64_t top = std::clamp<int64_t>(cy - cutH / 2, 0, h), bottom = std::clamp<int64_t>(cy + cutH / 2, 0, h);
      const int64_t left = std::clamp<int64_t>(cx - cutW / 2, 0, w), right = std::clamp<int64_t>(cx + cutW / 2, 0, w);
      result.box = {top, bottom, left, right};
      if (config.correctLambda)
        lambda = 1.0 - static_cast<double>((bottom - top) * (right - left)) / static_cast<double>(h * w);
      result.images = images.clone();
      result.images.slice(2, top, bottom)
          .slice(3, left, right)
          .copy_(images.flip(0).slice(2, top, bottom).slice(3, left, right));
    } else {
      result.images = images * lambda + images.flip(0) * (1.0 - lambda);
    }
  }
  result.lambda = lambda;
  result.cutmix = cutmix;
  result.targets = mixupTargets(labels.to(at::kLong), numClasses, lambda, config.labelSmoothing);
  return result;
}

}  // namespace pace::data
