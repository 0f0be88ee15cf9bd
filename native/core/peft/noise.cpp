#include "peft/noise.h"

#include "errors.h"
#include "tensor/dtype.h"

namespace pace::peft {

PaceNoise::PaceNoise(std::map<std::string, double> sigma, NoiseKind kind, NoiseShape shape, at::Generator generator,
                     std::map<std::string, torch::Tensor> replay)
    : sigma_(std::move(sigma)),
      kind_(kind),
      shape_(shape),
      generator_(std::move(generator)),
      replay_(std::move(replay)) {}

torch::Tensor PaceNoise::apply(const std::string& linear, const torch::Tensor& a) {
  const auto found = sigma_.find(linear);
  const double sigma = found == sigma_.end() ? 0.0 : found->second;
  if (sigma == 0.0) return a;

  std::vector<int64_t> shape = a.sizes().vec();
  if (shape_ == NoiseShape::PerRow) {
    for (size_t i = 1; i + 1 < shape.size(); ++i) shape[i] = 1;
  }
  torch::Tensor draw;
  if (const auto given = replay_.find(linear); given != replay_.end()) {
    draw = given->second.to(a.device(), a.scalar_type());
    if (draw.sizes().vec() != shape) {
      throw Error("noise for '" + linear + "' has shape " + shapeToString(draw.sizes().vec()) + ", expected " +
                  shapeToString(shape));
    }
  } else if (kind_ == NoiseKind::Dropout) {
    draw = torch::empty(shape, a.options()).bernoulli_(1.0 - sigma, generator_);
  } else {
    draw = at::normal(0.0, 1.0, shape, generator_, a.options());
  }
  draws_[linear] = draw;
  switch (kind_) {
    case NoiseKind::Multiplicative:
      return a * (1.0 + sigma * draw);
    case NoiseKind::Additive:
      return a + sigma * draw;
    case NoiseKind::Dropout:
      return a * draw / (1.0 - sigma);
  }
  return a;
}

}  // namespace pace::peft
