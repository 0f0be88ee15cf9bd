#include "data/resized_crop.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/_upsample_bilinear2d_aa.h>

#include <algorithm>
#include <cmath>

#include "data/pil_resize.h"
#include "data/transforms.h"
#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

namespace {

// Python's int(round(x)): to the nearest integer, halves to even.
int64_t roundHalfEven(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

// random.randint(0, high) from a uniform in [0, 1).
int64_t randomUpTo(int64_t high, double uniform) {
  return std::min(high, static_cast<int64_t>(uniform * static_cast<double>(high + 1)));
}

}  // namespace

void ResizedCropConfig::validate() const {
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1))
    throw OptionError("resizedCrop.scale must be [min, max] with 0 < min <= max <= 1");
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1] && std::isfinite(ratio[1])))
    throw OptionError("resizedCrop.ratio must be [min, max] with 0 < min <= max");
}

CropBox resizedCropBox(int64_t height, int64_t width, const ResizedCropConfig& config, const double* uniforms) {
  const double area = static_cast<double>(height * width);
  const double logLow = std::log(config.ratio[0]), logHigh = std::log(config.ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    // random.uniform(a, b) = a + (b − a)·random()
    const double target = (config.scale[0] + (config.scale[1] - config.scale[0]) * uniforms[2 * attempt]) * area;
    const double aspect = std::exp(logLow + (logHigh - logLow) * uniforms[2 * attempt + 1]);
    const int64_t w = roundHalfEven(std::sqrt(target * aspect));
    const int64_t h = roundHalfEven(std::sqrt(target / aspect));
    if (w <= width && h <= height) {
      // timm draws a box of size 0 too when the area rounds to it; a box needs a pixel to be resized.
      if (w < 1 || h < 1) continue;
      return {randomUpTo(height - h, uniforms[20]), randomUpTo(width - w, uniforms[21]), h, w};
    }
  }
  const double inRatio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  // A ratio far from the image's rounds a side to 0 in timm too (whose crop then fails): a box keeps one pixel.
  if (inRatio < config.ratio[0]) {
    h = std::max<int64_t>(1, roundHalfEven(static_cast<double>(w) / config.ratio[0]));
  } else if (inRatio > config.ratio[1]) {
    w = std::max<int64_t>(1, roundHalfEven(static_cast<double>(h) * config.ratio[1]));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

at::Tensor resizeSquareAsPillow(const at::Tensor& image, int64_t size, PillowFilter filter) {
  // On the CPU, Pillow's own integer arithmetic (data/pil_resize.h): timm's pixels. On a device, Pillow's two passes,
  // across then down, each rounded half up to 8 bits, with libtorch's float weights (the integer loop would take the
  // batch to the CPU every step); libtorch's antialiased kernels are Pillow's (bicubic with a = −0.5).
  if (image.is_cpu()) return resizeAsPillow(image, size, size, filter);
  at::Tensor planes = image.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).contiguous();
  const auto pass = [filter](const at::Tensor& x, int64_t height, int64_t width) {
    at::Tensor resized = filter == PillowFilter::Bicubic
                             ? at::_upsample_bicubic2d_aa(x, {height, width}, false, c10::nullopt, c10::nullopt)
                             : at::_upsample_bilinear2d_aa(x, {height, width}, false, c10::nullopt, c10::nullopt);
    return resized.add_(0.5).floor_().clamp_(0, 255);
  };
  if (planes.size(3) != size) planes = pass(planes, planes.size(2), size);
  if (planes.size(2) != size) planes = pass(planes, size, size);
  return planes.to(at::kByte).squeeze(0).permute({1, 2, 0});
}

ResizedCropResult randomResizedCropFlip(const at::Tensor& images, int64_t size, const ResizedCropConfig& config,
                                        bool flip, at::Generator generator) {
  if (images.scalar_type() != at::kByte || images.dim() != 4)
    throw ShapeError("a random resized crop needs uint8 images [N, H, W, C]; got " + dtypeName(images.scalar_type()) +
                     " " + shapeToString(images.sizes().vec()));
  ResizedCropResult result = randomResizedCropFlip(images.unbind(0), size, config, flip, std::move(generator));
  if (images.size(0) == 0) result.images = at::empty({0, size, size, images.size(3)}, images.options());
  return result;
}

ResizedCropResult randomResizedCropFlip(const std::vector<at::Tensor>& images, int64_t size,
                                        const ResizedCropConfig& config, bool flip, at::Generator generator) {
  config.validate();
  if (size < 1 || size > kMaxImageSize)
    throw OptionError("a random resized crop needs an output size from 1 to " + std::to_string(kMaxImageSize) +
                      "; got " + std::to_string(size));
  const auto n = static_cast<int64_t>(images.size());
  for (const at::Tensor& image : images) {
    if (image.size(0) < 1 || image.size(1) < 1)
      throw ShapeError("a random resized crop needs images of at least one pixel");
  }
  const at::Tensor uniforms =
      at::empty({n, kResizedCropDraws}, at::TensorOptions().dtype(at::kDouble)).uniform_(0.0, 1.0, generator);
  const std::vector<bool> flips = horizontalFlips(n, generator);
  const at::Tensor filterDraws =
      config.interpolation == Interpolation::Random
          ? at::empty({n}, at::TensorOptions().dtype(at::kDouble)).uniform_(0.0, 1.0, generator)
          : at::zeros({n}, at::TensorOptions().dtype(at::kDouble));
  const double* filterDraw = filterDraws.data_ptr<double>();
  ResizedCropResult result;
  result.boxes = at::empty({n, 4}, at::TensorOptions().dtype(at::kLong));
  result.flipped = at::zeros({n}, at::TensorOptions().dtype(at::kBool));
  const double* u = uniforms.data_ptr<double>();
  int64_t* boxes = result.boxes.data_ptr<int64_t>();
  bool* flipped = result.flipped.data_ptr<bool>();
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& image = images[i];
    const CropBox box = resizedCropBox(image.size(0), image.size(1), config, u + i * kResizedCropDraws);
    boxes[i * 4 + 0] = box.top;
    boxes[i * 4 + 1] = box.left;
    boxes[i * 4 + 2] = box.height;
    boxes[i * 4 + 3] = box.width;
    at::Tensor resized = resizeSquareAsPillow(image.narrow(0, box.top, box.height).narrow(1, box.left, box.width), size,
                                              filterFor(config.interpolation, filterDraw[i]));
    flipped[i] = flip && flips[static_cast<size_t>(i)];
    if (flipped[i]) resized = resized.flip({1});
    out.push_back(resized);
  }
  if (!out.empty()) result.images = at::stack(out).contiguous();  // none: the caller knows the channels
  return result;
}

}  // namespace pace::data
