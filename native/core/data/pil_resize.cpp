#include "data/pil_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/transforms.h"
#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

namespace {

// Pillow's fixed point for 8-bit images (Resample.c): weights as integers with 22 fractional bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinearWeight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubicWeight(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// One output sample's source range and integer weights.
struct Taps {
  int64_t first = 0;
  std::vector<int64_t> weights;
};

// Pillow's precompute_coeffs and normalize_coeffs_8bpc for one axis of `in` samples resampled to `out`.
std::vector<Taps> axisTaps(int64_t in, int64_t out, PillowFilter filter) {
  const double support1 = filter == PillowFilter::Bicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double filterScale = std::max(scale, 1.0);
  const double support = support1 * filterScale;
  std::vector<Taps> taps(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const double centre = (static_cast<double>(i) + 0.5) * scale;
    const int64_t first = std::max<int64_t>(static_cast<int64_t>(centre - support + 0.5), 0);
    const int64_t last = std::min<int64_t>(static_cast<int64_t>(centre + support + 0.5), in);
    std::vector<double> raw;
    double total = 0.0;
    for (int64_t x = first; x < last; ++x) {
      const double position = (static_cast<double>(x) - centre + 0.5) / filterScale;
      const double w = filter == PillowFilter::Bicubic ? bicubicWeight(position) : bilinearWeight(position);
      raw.push_back(w);
      total += w;
    }
    Taps& tap = taps[static_cast<size_t>(i)];
    tap.first = first;
    for (double w : raw) {
      const double k = (total != 0.0 ? w / total : w) * static_cast<double>(1 << kPrecisionBits);
      tap.weights.push_back(static_cast<int64_t>(std::trunc(k < 0 ? k - 0.5 : k + 0.5)));
    }
  }
  return taps;
}

uint8_t clip8(int64_t sum) {
  const int64_t value = sum >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(value, 0, 255));
}

// Resamples `lines` lines (samples `sourceStep` apart in memory, lines `sourceLineStep` apart, `channels`
// interleaved) into `out` samples per line, as one of Pillow's passes.
void resamplePass(const uint8_t* source, uint8_t* target, int64_t lines, int64_t out, int64_t channels,
                  int64_t sourceStep, int64_t sourceLineStep, int64_t targetStep, int64_t targetLineStep,
                  const std::vector<Taps>& taps) {
  for (int64_t line = 0; line < lines; ++line) {
    for (int64_t i = 0; i < out; ++i) {
      const Taps& tap = taps[static_cast<size_t>(i)];
      for (int64_t c = 0; c < channels; ++c) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        for (size_t k = 0; k < tap.weights.size(); ++k) {
          const int64_t at = line * sourceLineStep + (tap.first + static_cast<int64_t>(k)) * sourceStep + c;
          sum += static_cast<int64_t>(source[at]) * tap.weights[k];
        }
        target[line * targetLineStep + i * targetStep + c] = clip8(sum);
      }
    }
  }
}

}  // namespace

at::Tensor resizeAsPillow(const at::Tensor& image, int64_t height, int64_t width, PillowFilter filter) {
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(0) < 1 || image.size(1) < 1)
    throw ShapeError("a resize needs one uint8 image [H, W, C]; got " + dtypeName(image.scalar_type()) + " " +
                     shapeToString(image.sizes().vec()));
  if (height < 1 || width < 1 || height > kMaxImageSize || width > kMaxImageSize)
    throw OptionError("a resize needs an output size from 1 to " + std::to_string(kMaxImageSize) + "; got " +
                      std::to_string(height) + "x" + std::to_string(width));
  at::Tensor current = image.cpu().contiguous();
  const int64_t channels = current.size(2);
  // Across first, then down, as Pillow does; an axis that keeps its size is not resampled.
  if (width != current.size(1)) {
    const int64_t h = current.size(0), w = current.size(1);
    at::Tensor across = at::empty({h, width, channels}, current.options());
    resamplePass(current.data_ptr<uint8_t>(), across.data_ptr<uint8_t>(), h, width, channels, channels, w * channels,
                 channels, width * channels, axisTaps(w, width, filter));
    current = across;
  }
  if (height != current.size(0)) {
    const int64_t h = current.size(0), w = current.size(1);
    at::Tensor down = at::empty({height, w, channels}, current.options());
    // Lines are columns here: samples a row apart, lines a pixel apart.
    resamplePass(current.data_ptr<uint8_t>(), down.data_ptr<uint8_t>(), w, height, channels, w * channels, channels,
                 w * channels, channels, axisTaps(h, height, filter));
    current = down;
  }
  return current.to(image.device());
}

}  // namespace pace::data
