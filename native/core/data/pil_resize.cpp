#include "data/pil_resize.h"

#include <ATen/Parallel.h>

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
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs and normalize_coeffs_8bpc for outputs first..first+count of one axis of `in` samples
// resampled to `out`. An axis that keeps its size is not resampled by Pillow: each output is its own sample.
std::vector<Taps> axisTaps(int64_t in, int64_t out, PillowFilter filter, int64_t firstOutput, int64_t count) {
  std::vector<Taps> taps(static_cast<size_t>(count));
  if (in == out) {
    for (int64_t i = 0; i < count; ++i)
      taps[static_cast<size_t>(i)] = {firstOutput + i, {int32_t{1} << kPrecisionBits}};
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
      tap.weights.push_back(static_cast<int32_t>(std::trunc(k < 0 ? k - 0.5 : k + 0.5)));
    }
  }
  return taps;
}

// Sums in 32 bits, as Pillow's: 255 × the largest sum of positive weights (under 1.2 for both filters) × 2^22 fits.
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

uint8_t clip8(int32_t sum) { return static_cast<uint8_t>(std::clamp<int32_t>(sum >> kPrecisionBits, 0, 255)); }

// One row resampled across: each output pixel's channels summed together over its taps (pixels are contiguous).
template <int64_t Channels>
void resampleRow(const uint8_t* line, const std::vector<Taps>& columns, int64_t channels, uint8_t* out) {
  const int64_t c = Channels > 0 ? Channels : channels;
  std::vector<int32_t> heap(Channels > 0 ? 0 : static_cast<size_t>(c));
  int32_t fixed[Channels > 0 ? Channels : 1];
  int32_t* sums = Channels > 0 ? fixed : heap.data();
  for (size_t x = 0; x < columns.size(); ++x) {
    const Taps& tap = columns[x];
    const uint8_t* p = line + tap.first * c;
    for (int64_t ch = 0; ch < c; ++ch) sums[ch] = kHalf;
    for (size_t k = 0; k < tap.weights.size(); ++k, p += c) {
      const int32_t w = tap.weights[k];
      for (int64_t ch = 0; ch < c; ++ch) sums[ch] += p[ch] * w;
    }
    for (int64_t ch = 0; ch < c; ++ch) out[static_cast<int64_t>(x) * c + ch] = clip8(sums[ch]);
  }
}

}  // namespace

at::Tensor resizeAsPillow(const at::Tensor& image, int64_t height, int64_t width, PillowFilter filter,
                          std::optional<PillowWindow> window) {
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(0) < 1 || image.size(1) < 1 ||
      image.size(2) < 1)
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
  const int64_t rowLength = win.width * channels;
  const auto tapsEnd = [](const Taps& tap) { return tap.first + static_cast<int64_t>(tap.weights.size()); };
  // The source rows are resampled across (Pillow's order, each rounded to 8 bits) a band at a time, and each band's
  // rows are added into the sums of every output row whose taps reach them: memory is a band and the sums, whatever
  // the image's height (all rows across at once, a 1 × 4,000,000 strip stretched to 224 held 2.7 GB). Integer sums
  // in any order are Pillow's exactly. Rows are independent in both passes: split across libtorch's threads.
  std::vector<int32_t> sums(static_cast<size_t>(win.height * rowLength), kHalf);
  constexpr int64_t kBand = 64;
  std::vector<uint8_t> band(static_cast<size_t>(std::min(kBand, lastRow - firstRow) * rowLength));
  int64_t firstOutput = 0;  // before it, every output row's taps end before the band
  for (int64_t start = firstRow; start < lastRow; start += kBand) {
    const int64_t end = std::min(lastRow, start + kBand);
    at::parallel_for(start, end, 8, [&](int64_t begin, int64_t stop) {
      for (int64_t y = begin; y < stop; ++y) {
        const uint8_t* line = in + y * inWidth * channels;
        uint8_t* across = band.data() + (y - start) * rowLength;
        if (channels == 3)
          resampleRow<3>(line, columns, channels, across);
        else
          resampleRow<0>(line, columns, channels, across);
      }
    });
    while (firstOutput < win.height && tapsEnd(rows[static_cast<size_t>(firstOutput)]) <= start) ++firstOutput;
    int64_t lastOutput = firstOutput;  // from it on, every output row's taps start after the band
    while (lastOutput < win.height && rows[static_cast<size_t>(lastOutput)].first < end) ++lastOutput;
    at::parallel_for(firstOutput, lastOutput, 4, [&](int64_t begin, int64_t stop) {
      for (int64_t y = begin; y < stop; ++y) {
        const Taps& tap = rows[static_cast<size_t>(y)];
        int32_t* sum = sums.data() + y * rowLength;
        for (int64_t r = std::max(start, tap.first); r < std::min(end, tapsEnd(tap)); ++r) {
          const int32_t w = tap.weights[static_cast<size_t>(r - tap.first)];
          const uint8_t* line = band.data() + (r - start) * rowLength;
          for (int64_t i = 0; i < rowLength; ++i) sum[i] += line[i] * w;
        }
      }
    });
  }
  at::Tensor result = at::empty({win.height, win.width, channels}, source.options());
  uint8_t* out = result.data_ptr<uint8_t>();
  at::parallel_for(0, win.height * rowLength, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = clip8(sums[static_cast<size_t>(i)]);
  });
  return result.to(image.device());
}

}  // namespace pace::data
