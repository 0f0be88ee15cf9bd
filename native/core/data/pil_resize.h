#pragma once
// Resizing stored pixels as the reference's Pillow does for `Resize(..., interpolation=BICUBIC)`: used where
// libvips departs from it (an image made larger: libvips samples half an output pixel up and left of Pillow).
#include <ATen/ATen.h>

namespace pace::data {

// uint8 [H, W, C] -> uint8 [height, width, C], Pillow's bicubic resample (a = -0.5, widened by the scale when
// shrinking): across first, then down, each pass rounded half up and clamped to 8 bits as Pillow's fixed-point
// passes are. Within a level of Pillow's, nearly everywhere equal.
at::Tensor resizeBicubicAsPillow(const at::Tensor& image, int64_t height, int64_t width);

}  // namespace pace::data
