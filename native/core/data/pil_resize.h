#pragma once
// Resizing decoded pixels exactly as the reference's Pillow does (`Image.resize` with BILINEAR or BICUBIC), where
// libvips departs from it (an enlargement: libvips samples half an output pixel up and left of Pillow). Once per
// image at decode time: a plain CPU loop.
#include <ATen/ATen.h>

namespace pace::data {

enum class PillowFilter { Bilinear, Bicubic };

// uint8 [H, W, C] -> uint8 [height, width, C], Pillow's resample with `filter` (widened by the scale when
// shrinking) in Pillow's integer arithmetic (Resample.c): weights with 22 fractional bits, across first, then down,
// each pass rounded to 8 bits. The same pixels as Pillow's.
at::Tensor resizeAsPillow(const at::Tensor& image, int64_t height, int64_t width, PillowFilter filter);

}  // namespace pace::data
