#include "data/transforms.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>

#include "errors.h"
#include "tensor/dtype.h"
#include "tensor/to_device.h"

namespace pace::data {

at::Tensor toModelInput(const at::Tensor& images, int64_t size, const Normalization& normalization) {
  const bool channelsLast = images.dim() == 4;
  if (images.scalar_type() != at::kByte || (images.dim() != 3 && !channelsLast) ||
      (channelsLast && images.size(3) != 1 && images.size(3) != 3 && images.size(3) != 4)) {
    throw ShapeError("images must be uint8 [N, H, W] or [N, H, W, C] with C = 1, 3 or 4; got " +
                     dtypeName(images.scalar_type()) + " " + shapeToString(images.sizes().vec()));
  }
  if (images.size(1) < 1 || images.size(2) < 1)
    throw ShapeError("images must have at least one pixel; got " + shapeToString(images.sizes().vec()));
  if (size < 1 || size > kMaxImageSize)
    throw OptionError("the image size must be from 1 to " + std::to_string(kMaxImageSize) + "; got " +
                      std::to_string(size));
  at::Tensor x = (channelsLast ? images : images.unsqueeze(3)).permute({0, 3, 1, 2}).to(at::kFloat).div_(255.0);
  if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  if (x.size(1) == 4) x = x.slice(1, 0, 3);
  if (x.size(2) != size || x.size(3) != size) {
    x = at::_upsample_bicubic2d_aa(x.contiguous(), {size, size}, false, c10::nullopt, c10::nullopt).clamp_(0.0, 1.0);
  }
  // Made on the CPU and queued over: at::tensor on a GPU would wait for the device, each batch.
  const at::Tensor mean = toDeviceQueued(
      at::tensor({normalization.mean[0], normalization.mean[1], normalization.mean[2]}, at::kFloat), x.device());
  const at::Tensor std = toDeviceQueued(
      at::tensor({normalization.std[0], normalization.std[1], normalization.std[2]}, at::kFloat), x.device());
  return ((x - mean.view({1, 3, 1, 1})) / std.view({1, 3, 1, 1})).contiguous();
}

namespace {

// The stored pixels the crop and flip augmentations take: uint8 [N, H, W, C].
void checkStoredPixels(const at::Tensor& images) {
  if (images.scalar_type() != at::kByte || images.dim() != 4)
    throw ShapeError("augmentation needs uint8 images [N, H, W, C]; got " + dtypeName(images.scalar_type()) + " " +
                     shapeToString(images.sizes().vec()));
}

}  // namespace

at::Tensor randomCropFlip(const at::Tensor& images, int64_t crop, bool flip, at::Generator generator) {
  checkStoredPixels(images);
  return randomCropFlip(images.unbind(0), crop, flip, std::move(generator));
}

at::Tensor randomCropFlip(const std::vector<at::Tensor>& images, int64_t crop, bool flip, at::Generator generator) {
  const auto n = static_cast<int64_t>(images.size());
  for (const at::Tensor& image : images) {
    if (crop < 1 || crop > image.size(0) || crop > image.size(1))
      throw OptionError("a random crop of " + std::to_string(crop) + " does not fit images of " +
                        std::to_string(image.size(0)) + "x" + std::to_string(image.size(1)) +
                        " (the image is too small to crop)");
  }
  // torchvision's RandomCrop: the top row, then the left column, each uniform over the positions that fit.
  const auto positions = [&](int64_t axis) {
    std::vector<int64_t> drawn(n);
    for (int64_t i = 0; i < n; ++i)
      drawn[i] = at::randint(images[i].size(axis) - crop + 1, {1}, generator, at::kLong).item<int64_t>();
    return drawn;
  };
  const std::vector<int64_t> rows = positions(0), cols = positions(1);
  const std::vector<bool> flips = horizontalFlips(n, generator);
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor window = images[i].narrow(0, rows[i], crop).narrow(1, cols[i], crop);
    if (flip && flips[i]) window = window.flip({1});
    out.push_back(window);
  }
  return at::stack(out).contiguous();
}

at::Tensor randomFlip(const at::Tensor& images, at::Generator generator) {
  checkStoredPixels(images);
  const std::vector<bool> flips = horizontalFlips(images.size(0), generator);
  at::Tensor out = images.clone();
  for (int64_t i = 0; i < images.size(0); ++i) {
    if (flips[i]) out[i].copy_(images[i].flip({1}));
  }
  return out;
}

std::vector<bool> horizontalFlips(int64_t n, const at::Generator& generator) {
  const at::Tensor draws = at::empty({n}, at::kDouble).uniform_(0.0, 1.0, generator);
  const double* draw = draws.data_ptr<double>();
  std::vector<bool> flips(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) flips[static_cast<size_t>(i)] = draw[i] < 0.5;
  return flips;
}

}  // namespace pace::data
