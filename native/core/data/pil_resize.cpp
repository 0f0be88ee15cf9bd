#include "data/pil_resize.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>

#include "data/transforms.h"
#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

namespace {

// One of Pillow's passes: PyTorch's antialiased bicubic is Pillow's filter; the 8-bit rounding between the passes
// is Pillow's own.
at::Tensor pass(const at::Tensor& planes, int64_t height, int64_t width) {
  return at::_upsample_bicubic2d_aa(planes, {height, width}, false, c10::nullopt, c10::nullopt)
      .add_(0.5)
      .floor_()
      .clamp_(0, 255);
}

}  // namespace

at::Tensor resizeBicubicAsPillow(const at::Tensor& image, int64_t height, int64_t width) {
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(0) < 1 || image.size(1) < 1)
    throw ShapeError("a bicubic resize needs one uint8 image [H, W, C]; got " + dtypeName(image.scalar_type()) + " " +
                     shapeToString(image.sizes().vec()));
  if (height < 1 || width < 1 || height > kMaxImageSize || width > kMaxImageSize)
    throw OptionError("a bicubic resize needs an output size from 1 to " + std::to_string(kMaxImageSize) + "; got " +
                      std::to_string(height) + "x" + std::to_string(width));
  at::Tensor planes = image.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).contiguous();
  if (width != image.size(1)) planes = pass(planes, image.size(0), width);
  if (height != image.size(0)) planes = pass(planes, height, width);
  return planes.to(at::kByte).squeeze(0).permute({1, 2, 0}).contiguous();
}

}  // namespace pace::data
