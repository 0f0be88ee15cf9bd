#include "data/pil_convert.h"

#include <ATen/Parallel.h>

#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

at::Tensor cmykToRgbAsPillow(const at::Tensor& cmyk) {
  if (cmyk.scalar_type() != at::kByte || cmyk.dim() != 3 || cmyk.size(2) != 4)
    throw ShapeError("a CMYK to RGB conversion needs one uint8 image [H, W, 4]; got " + dtypeName(cmyk.scalar_type()) +
                     " " + shapeToString(cmyk.sizes().vec()));
  const at::Tensor in = cmyk.contiguous();
  at::Tensor rgb = at::empty({cmyk.size(0), cmyk.size(1), 3}, cmyk.options());
  const uint8_t* from = in.data_ptr<uint8_t>();
  uint8_t* to = rgb.data_ptr<uint8_t>();
  at::parallel_for(0, cmyk.size(0) * cmyk.size(1), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      const int white = 255 - from[4 * pixel + 3];
      for (int channel = 0; channel < 3; ++channel) {
        const int product = from[4 * pixel + channel] * white + 128;  // MULDIV255: a·b/255, rounded
        to[3 * pixel + channel] = static_cast<uint8_t>(white - (((product >> 8) + product) >> 8));
      }
    }
  });
  return rgb;
}

}  // namespace pace::data
