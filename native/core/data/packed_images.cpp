#include "data/packed_images.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

namespace {

// torchvision's CenterCrop offset: int(round((side − crop) / 2)), Python rounding halves to even.
int64_t centerOffset(int64_t side, int64_t crop) {
  return static_cast<int64_t>(std::nearbyint(static_cast<double>(side - crop) / 2.0));
}

}  // namespace

PackedImages::PackedImages(at::Tensor pixels, const at::Tensor& extents) : pixels_(std::move(pixels)) {
  if (pixels_.scalar_type() != at::kByte || pixels_.dim() != 2 ||
      (pixels_.size(1) != 1 && pixels_.size(1) != 3 && pixels_.size(1) != 4))
    throw ShapeError("packed images must be uint8 pixels [P, C] with C = 1, 3 or 4; got " +
                     dtypeName(pixels_.scalar_type()) + " " + shapeToString(pixels_.sizes().vec()));
  if (extents.scalar_type() != at::kLong || extents.dim() != 2 || extents.size(1) != 2)
    throw ShapeError("image extents must be int64 [N, 2] (height, width); got " + dtypeName(extents.scalar_type()) +
                     " " + shapeToString(extents.sizes().vec()));
  const at::Tensor sizes = extents.cpu().contiguous();
  const int64_t* values = sizes.data_ptr<int64_t>();
  const int64_t n = sizes.size(0);
  offsets_.reserve(n);
  heights_.reserve(n);
  widths_.reserve(n);
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t height = values[2 * i], width = values[2 * i + 1];
    if (height < 1 || width < 1 || height > std::numeric_limits<int64_t>::max() / width ||
        total > std::numeric_limits<int64_t>::max() - height * width)
      throw ShapeError("image " + std::to_string(i) + " has extent " + std::to_string(height) + "x" +
                       std::to_string(width) + ": each side must be at least 1 pixel");
    offsets_.push_back(total);
    heights_.push_back(height);
    widths_.push_back(width);
    total += height * width;
  }
  if (total != pixels_.size(0))
    throw ShapeError("the extents add up to " + std::to_string(total) + " pixels, but the packed images hold " +
                     std::to_string(pixels_.size(0)));
}

int64_t PackedImages::smallestSide() const {
  int64_t smallest = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < heights_.size(); ++i) smallest = std::min({smallest, heights_[i], widths_[i]});
  return smallest;
}

PackedImages PackedImages::withPixels(at::Tensor pixels) const {
  if (pixels.sizes() != pixels_.sizes())
    throw ShapeError("packed pixels " + shapeToString(pixels.sizes().vec()) + " in place of " +
                     shapeToString(pixels_.sizes().vec()));
  PackedImages moved = *this;
  moved.pixels_ = std::move(pixels);
  return moved;
}

at::Tensor PackedImages::image(int64_t i) const {
  if (i < 0 || i >= count())
    throw InputError("image " + std::to_string(i) + " is outside the " + std::to_string(count()) + " packed images");
  return pixels_.narrow(0, offsets_[i], heights_[i] * widths_[i]).view({heights_[i], widths_[i], pixels_.size(1)});
}

std::vector<at::Tensor> PackedImages::select(const at::Tensor& indices) const {
  const at::Tensor cpu = indices.cpu().to(at::kLong).contiguous();
  const int64_t* index = cpu.data_ptr<int64_t>();
  std::vector<at::Tensor> images;
  images.reserve(cpu.numel());
  for (int64_t k = 0; k < cpu.numel(); ++k) images.push_back(image(index[k]));
  return images;
}

at::Tensor PackedImages::centerCrops(int64_t begin, int64_t end, int64_t size) const {
  if (size < 1) throw OptionError("a centre crop needs a size of at least 1; got " + std::to_string(size));
  at::Tensor out = at::zeros({end - begin, size, size, pixels_.size(1)}, pixels_.options());
  for (int64_t i = begin; i < end; ++i) {
    const at::Tensor whole = image(i);
    // Padded first where smaller (torchvision: left/top (crop − side) / 2, floored), then cropped at the centre.
    const int64_t rows = std::min(size, heights_[i]), cols = std::min(size, widths_[i]);
    const int64_t top = heights_[i] > size ? centerOffset(heights_[i], size) : 0;
    const int64_t left = widths_[i] > size ? centerOffset(widths_[i], size) : 0;
    const int64_t padTop = heights_[i] < size ? (size - heights_[i]) / 2 : 0;
    const int64_t padLeft = widths_[i] < size ? (size - widths_[i]) / 2 : 0;
    out[i - begin]
        .narrow(0, padTop, rows)
        .narrow(1, padLeft, cols)
        .copy_(whole.narrow(0, top, rows).narrow(1, left, cols));
  }
  return out;
}

}  // namespace pace::data
