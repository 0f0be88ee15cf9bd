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

// Pillow's precompute_coeffs and normalize_coeffs_8bpc for outputs first..first+count of one axis of `in` samples
// resampled to `out`. An axis that keeps its size is not resampled by Pillow: each output is its own sample.
std::vector<Taps> axisTaps(int64_t in, int64_t out, PillowFilter filter, int64_t firstOutput, int64_t count) {
  std::vector<Taps> taps(static_cast<size_t>(count));
  if (in == out) {
    for (int64_t i = 0; i < count; ++i)
      taps[static_cast<size_t>(i)] = {firstOutput + i, {int64_t{1} << kPrecisionBits}};
    return taps;
  }
  const double support1 = filter == PillowFilter::Bicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double filterScale = std::max(scale, 1.0);
  const double support = support1 * filterScale;
  for (int64_t i = 0; i < count; ++i) {
    const double centre = (static_cast<double>(firstOutput + i) + 0.5) * scale;
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

}  // namespace

at::Tensor resizeAsPillow(const at::Tensor& image, int64_t height, int64_t width, PillowFilter filter,
                          std::optional<PillowWindow> window) {
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(0) < 1 || image.size(1) < 1)
    throw ShapeError("a resize needs one uint8 image [H, W, C]; got " + dtypeName(image.scalar_type()) + " " +
                     shapeToString(image.sizes().vec()));
  constexpr int64_t kMaxResized = int64_t{1} << 31;  // the whole size: only the window is computed
  if (height < 1 || width < 1 || height > kMaxResized || width > kMaxResized)
    throw OptionError("a resize needs an output size from 1 to 2^31; got " + std::to_string(height) + "x" +
                      std::to_string(width));
  const PillowWindow win = window.value_or(PillowWindow{0, 0, height, width});
  if (win.top < 0 || win.left < 0 || win.height < 1 || win.width < 1 || win.height > kMaxImageSize ||
      win.width > kMaxImageSize || win.top + win.height > height || win.left + win.width > width)
    throw OptionError("a resize window of " + std::to_string(win.height) + "x" + std::to_string(win.width) + " at (" +
                      std::to_string(win.top) + ", " + std::to_string(win.left) + ") does not fit an output of " +
                      std::to_string(height) + "x" + std::to_string(width) + " (at most " +
                      std::to_string(kMaxImageSize) + " a side)");
  const at::Tensor source = image.cpu().contiguous();
  const int64_t inHeight = source.size(0), inWidth = source.size(1), channels = source.size(2);
  const std::vector<Taps> rows = axisTaps(inHeight, height, filter, win.top, win.height);
  const std::vector<Taps> columns = axisTaps(inWidth, width, filter, win.left, win.width);
  // The source rows the window's rows read, resampled across first (Pillow's order), each rounded to 8 bits.
  int64_t firstRow = inHeight, lastRow = 0;
  for (const Taps& tap : rows) {
    firstRow = std::min(firstRow, tap.first);
    lastRow = std::max(lastRow, tap.first + static_cast<int64_t>(tap.weights.size()));
  }
  const uint8_t* in = source.data_ptr<uint8_t>();
  std::vector<uint8_t> across(static_cast<size_t>((lastRow - firstRow) * win.width * channels));
  for (int64_t y = firstRow; y < lastRow; ++y) {
    for (int64_t x = 0; x < win.width; ++x) {
      const Taps& tap = columns[static_cast<size_t>(x)];
      for (int64_t c = 0; c < channels; ++c) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        for (size_t k = 0; k < tap.weights.size(); ++k)
          sum += in[(y * inWidth + tap.first + static_cast<int64_t>(k)) * channels + c] * tap.weights[k];
        across[static_cast<size_t>(((y - firstRow) * win.width + x) * channels + c)] = clip8(sum);
      }
    }
  }
  at::Tensor result = at::empty({win.height, win.width, channels}, source.options());
  uint8_t* out = result.data_ptr<uint8_t>();
  for (int64_t y = 0; y < win.height; ++y) {
    const Taps& tap = rows[static_cast<size_t>(y)];
    for (int64_t x = 0; x < win.width; ++x) {
      for (int64_t c = 0; c < channels; ++c) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        for (size_t k = 0; k < tap.weights.size(); ++k) {
          const int64_t row = tap.first + static_cast<int64_t>(k) - firstRow;
          sum += across[static_cast<size_t>((row * win.width + x) * channels + c)] * tap.weights[k];
        }
        out[(y * win.width + x) * channels + c] = clip8(sum);
      }
    }
  }
  return result.to(image.device());
}

}  // namespace pace::data
