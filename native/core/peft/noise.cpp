#include "peft/noise.h"

#include "errors.h"
#include "tensor/dtype.h"

namespace pace::peft {

PaceNoise::PaceNoise(std::map<std::string, double> sigma, NoiseKind kind, NoiseShape shape, at::Generator generator,
                     std::map<std::string, torch::Tensor> replay, NoiseTarget target)
    : sigma_(std::move(sigma)),
      kind_(kind),
      shape_(shape),
      target_(target),
      generator_(std::move(generator)),
      replay_(std::move(replay)) {}

double PaceNoise::sigmaOf(const std::string& linear) const {
  const auto found = sigma_.find(linear);
  return found == sigma_.end() ? 0.0 : found->second;
}

torch::Tensor PaceNoise::draw(const std::string& linear, double sigma, at::IntArrayRef outputShape,
                              const at::TensorOptions& options) {
  std::vector<int64_t> shape = outputShape.vec();
  if (shape_ == NoiseShape::PerRow) {
    for (size_t i = 1; i + 1 < shape.size(); ++i) shape[i] = 1;
  }
  // ε is drawn (and kept for replay) in float32 at least, whatever precision the step computes in, so that a seed
  // draws the same ε under fp32, tf32 and bf16; the caller gets it in the dtype it asked for.
  const at::ScalarType requested = options.dtype().toScalarType();
  const at::TensorOptions drawOptions = options.dtype(atLeastFloat32(requested));
  torch::Tensor result;
  if (const auto given = replay_.find(linear); given != replay_.end()) {
    result = given->second.to(drawOptions.device(), drawOptions.dtype().toScalarType());
    if (result.sizes().vec() != shape) {
      throw ShapeError("noise for '" + linear + "' has shape " + shapeToString(result.sizes().vec()) + ", expected " +
                       shapeToString(shape));
    }
  } else if (kind_ == NoiseKind::Dropout) {
    result = torch::empty(shape, drawOptions).bernoulli_(1.0 - sigma, generator_);
  } else {
    result = at::normal(0.0, 1.0, shape, generator_, drawOptions);
  }
  draws_[linear] = result;
  return result.to(requested);  // no copy when it is already so
}

torch::Tensor PaceNoise::noisyAdapterOutput(const std::string& linear, const torch::Tensor& a) {
  const double sigma = sigmaOf(linear);
  if (sigma == 0.0) return a;
  const torch::Tensor drawn = draw(linear, sigma, a.sizes(), a.options());
  switch (kind_) {
    case NoiseKind::Multiplicative:
      return a * (1.0 + sigma * drawn);
    case NoiseKind::Additive:
      return a + sigma * drawn;
    case NoiseKind::Dropout:
      return a * drawn / (1.0 - sigma);
  }
  return a;
}

torch::Tensor PaceNoise::noisyWholeOutput(const std::string& linear, const torch::Tensor& output) {
  return noisyAdapterOutput(linear, output);
}

bool PaceNoise::perRowMultiplier() const {
  return shape_ == NoiseShape::PerRow && (kind_ == NoiseKind::Multiplicative || kind_ == NoiseKind::Dropout);
}

torch::Tensor PaceNoise::rowMultiplier(const std::string& linear, at::IntArrayRef outputShape,
                                       const at::TensorOptions& options) {
  if (!perRowMultiplier()) throw Error(ErrorCode::Internal, "this PACE noise is not a per-row multiplier");
  const double sigma = sigmaOf(linear);
  if (sigma == 0.0) return {};
  const torch::Tensor drawn = draw(linear, sigma, outputShape, options);
  const torch::Tensor z = kind_ == NoiseKind::Dropout ? drawn / (1.0 - sigma) : 1.0 + sigma * drawn;
  return z.reshape({outputShape.front(), outputShape.back()});
}

}  // namespace pace::peft
