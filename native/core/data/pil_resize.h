#pragma once
// Resizing decoded pixels exactly as the reference's Pillow does (`Image.resize` with BILINEAR or BICUBIC), where
// libvips departs from it (an enlargement: libvips samples half an output pixel up and left of Pillow). Once per
// image at decode time: a plain CPU loop.
#include <ATen/ATen.h>

#include <optional>

namespace pace::data {

enum class PillowFilter { Bilinear, Bicubic };

// The part of the resized image to compute (a centre crop of an enlargement), in output pixels.
struct PillowWindow {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// uint8 [H, W, C] -> uint8 [height, width, C], Pillow's resample with `filter` (widened by the scale when
// shrinking) in Pillow's integer arithmetic (Resample.c): weights with 22 fractional bits, across first, then down,
// each pass rounded to 8 bits. The same pixels as Pillow's. With `window`, only that part of the output is computed
// (and returned), the same pixels as there in the whole resize.
at::Tensor resizeAsPillow(const at::Tensor& image, int64_t height, int64_t width, PillowFilter filter,
                          std::optional<PillowWindow> window = std::nullopt);

}  // namespace pace::data
