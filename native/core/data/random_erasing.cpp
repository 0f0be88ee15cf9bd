#include "data/random_erasing.h"

#include <cmath>

#include "errors.h"
#include "tensor/dtype.h"
#include "tensor/to_device.h"

namespace pace::data {

void RandomErasingConfig::validate() const {
  if (!(prob >= 0 && prob <= 1)) throw OptionError("randomErasing.prob must be in [0, 1]");
  if (count < 1 || count > 100) throw OptionError("randomErasing.count must be an integer from 1 to 100");
  if (!(minArea > 0 && minArea <= maxArea && maxArea <= 1))
    throw OptionError("randomErasing's area must be [min, max] with 0 < min <= max <= 1");
  if (!(minAspect > 0 && minAspect <= 1)) throw OptionError("randomErasing.minAspect must be in (0, 1]");
}

namespace {

// Python's random.uniform(a, b) = a + (b − a)·random(), and random.randint(a, b), both ends included.
double uniform(double a, double b, at::Generator& generator) {
  return a + (b - a) * at::empty({1}, at::kDouble).uniform_(0.0, 1.0, generator).item<double>();
}

int64_t randint(int64_t a, int64_t b, at::Generator& generator) {
  return at::randint(a, b + 1, {1}, generator, at::kLong).item<int64_t>();
}

// Python's round(): halves to the even neighbour (nearbyint in the default rounding mode).
int64_t roundHalfEven(double value) { return static_cast<int64_t>(std::nearbyint(value)); }

}  // namespace

RandomErasingResult randomErasing(const at::Tensor& images, const RandomErasingConfig& config,
                                  at::Generator generator) {
  config.validate();
  if (!at::isFloatingType(images.scalar_type()) || images.dim() != 4)
    throw ShapeError("random erasing needs floating-point images [B, C, H, W]; got " + dtypeName(images.scalar_type()) +
                     " " + shapeToString(images.sizes().vec()));
  const int64_t channels = images.size(1), height = images.size(2), width = images.size(3);
  const double area = static_cast<double>(height * width);
  const double logAspect[2] = {std::log(config.minAspect), std::log(1.0 / config.minAspect)};
  RandomErasingResult result{images, {}};
  if (config.prob == 0) return result;  // off, drawing nothing, as timm's train.py leaves the transform out
  std::vector<at::Tensor> noises;       // each box's fill [C, h, w] or [C, 1, 1], drawn on the CPU in timm's order
  for (int64_t i = 0; i < images.size(0); ++i) {
    if (uniform(0.0, 1.0, generator) > config.prob) continue;
    const int64_t boxes = config.count > 1 ? randint(1, config.count, generator) : 1;
    for (int64_t b = 0; b < boxes; ++b) {
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double target = uniform(config.minArea, config.maxArea, generator) * area / static_cast<double>(boxes);
        const double aspect = std::exp(uniform(logAspect[0], logAspect[1], generator));
        const int64_t h = roundHalfEven(std::sqrt(target * aspect));
        const int64_t w = roundHalfEven(std::sqrt(target / aspect));
        if (!(w < width && h < height)) continue;
        const int64_t top = randint(0, height - h, generator);
        const int64_t left = randint(0, width - w, generator);
        if (config.fill == ErasingFill::Pixel)
          noises.push_back(at::empty({channels, h, w}, at::kFloat).normal_(0.0, 1.0, generator));
        else if (config.fill == ErasingFill::Rand)
          noises.push_back(at::empty({channels, 1, 1}, at::kFloat).normal_(0.0, 1.0, generator));
        else
          noises.push_back(at::zeros({channels, 1, 1}, at::kFloat));
        result.boxes.push_back({i, top, left, h, w});
        break;
      }
    }
  }
  if (result.boxes.empty()) return result;
  // All boxes' fills travel to the images' device in one copy that does not wait for it (one per box would
  // stop the host each time); the batch given is left as it was.
  std::vector<at::Tensor> flat;
  flat.reserve(noises.size());
  for (const at::Tensor& noise : noises) flat.push_back(noise.reshape({-1}));
  const at::Tensor fills = toDeviceQueued(at::cat(flat).to(images.scalar_type()), images.device());
  result.images = images.clone();
  int64_t offset = 0;
  for (size_t k = 0; k < result.boxes.size(); ++k) {
    const ErasedBox& box = result.boxes[k];
    const at::Tensor fill = fills.narrow(0, offset, noises[k].numel()).view(noises[k].sizes());
    offset += noises[k].numel();
    result.images[box.image].narrow(1, box.top, box.height).narrow(2, box.left, box.width).copy_(fill);
  }
  return result;
}

}  // namespace pace::data
