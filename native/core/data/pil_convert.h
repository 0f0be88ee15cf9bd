#pragma once
// Colour conversions exactly as the reference's Pillow does them (`Image.convert('RGB')`), where libvips converts
// otherwise. Once per image at decode time, on a worker thread: a plain CPU loop.
#include <ATen/ATen.h>

namespace pace::data {

// uint8 [H, W, 4] CMYK ink amounts (0 none, 255 full; Adobe's inverted storage already undone) -> uint8 [H, W, 3]
// RGB as Pillow's cmyk2rgb: each channel (255 - K) - C·(255 - K)/255, the product rounded as Pillow's MULDIV255.
at::Tensor cmykToRgbAsPillow(const at::Tensor& cmyk);

}  // namespace pace::data
