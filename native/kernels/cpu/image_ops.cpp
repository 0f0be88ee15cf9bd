#include "cpu/image_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace pace::kernels {

namespace {

int64_t pixelCount(const ImageU8& image) { return image.height * image.width; }

// Each channel c through its own table tables[c * 256 + v].
void applyTables(ImageU8 image, const uint8_t* tables) {
  const int64_t count = pixelCount(image), channels = image.channels;
  for (int64_t i = 0; i < count; ++i) {
    uint8_t* pixel = image.pixels + i * channels;
    for (int64_t c = 0; c < channels; ++c) pixel[c] = tables[c * 256 + pixel[c]];
  }
}

// One table for every channel.
void applyTable(ImageU8 image, const uint8_t* table) {
  const int64_t values = pixelCount(image) * image.channels;
  for (int64_t i = 0; i < values; ++i) image.pixels[i] = table[image.pixels[i]];
}

void histogram(const ImageU8& image, int64_t channel, int64_t* counts) {
  std::fill(counts, counts + 256, 0);
  const int64_t count = pixelCount(image);
  for (int64_t i = 0; i < count; ++i) ++counts[image.pixels[i * image.channels + channel]];
}

// PIL's "L" conversion of an RGB pixel (ITU-R 601-2 luma, 16-bit fixed point, rounded).
inline uint8_t luma(const uint8_t* rgb) {
  return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

// ImagingBlend(degenerate, image, alpha) for one value, alpha already float32 as PIL takes it.
inline uint8_t blendValue(uint8_t degenerate, uint8_t value, float alpha, bool extrapolating) {
  const float mixed = static_cast<float>(static_cast<int>(degenerate)) +
                      alpha * static_cast<float>(static_cast<int>(value) - static_cast<int>(degenerate));
  if (!extrapolating) return static_cast<uint8_t>(mixed);
  if (mixed <= 0.0f) return 0;
  if (mixed >= 255.0f) return 255;
  return static_cast<uint8_t>(mixed);
}

// image ← Image.blend(degenerate, image, factor); `degenerate` has the image's layout, or with `constant` is
// one value per channel (read as degenerate[c] for every pixel).
void blend(ImageU8 image, const uint8_t* degenerate, bool constant, double factor) {
  const float alpha = static_cast<float>(factor);
  if (alpha == 1.0f) return;  // PIL copies the second image
  const bool extrapolating = !(alpha >= 0.0f && alpha <= 1.0f);
  const int64_t count = pixelCount(image), channels = image.channels;
  for (int64_t i = 0; i < count; ++i) {
    uint8_t* pixel = image.pixels + i * channels;
    const uint8_t* from = constant ? degenerate : degenerate + i * channels;
    for (int64_t c = 0; c < channels; ++c) {
      pixel[c] = alpha == 0.0f ? from[c] : blendValue(from[c], pixel[c], alpha, extrapolating);
    }
  }
}

}  // namespace

void autoContrast(ImageU8 image) {
  uint8_t tables[4 * 256];
  int64_t counts[256];
  for (int64_t c = 0; c < image.channels; ++c) {
    histogram(image, c, counts);
    int lo = 0, hi = 255;
    while (lo < 255 && counts[lo] == 0) ++lo;
    while (hi > 0 && counts[hi] == 0) --hi;
    uint8_t* table = tables + c * 256;
    if (hi <= lo) {
      for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(v);
      continue;
    }
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    for (int v = 0; v < 256; ++v) {
      const int mapped = static_cast<int>(v * scale + offset);  // Python's int(): towards zero
      table[v] = static_cast<uint8_t>(std::clamp(mapped, 0, 255));
    }
  }
  applyTables(image, tables);
}

void equalize(ImageU8 image) {
  uint8_t tables[4 * 256];
  int64_t counts[256];
  for (int64_t c = 0; c < image.channels; ++c) {
    histogram(image, c, counts);
    uint8_t* table = tables + c * 256;
    int64_t used = 0, total = 0, last = 0;
    for (int v = 0; v < 256; ++v) {
      if (counts[v] == 0) continue;
      ++used;
      total += counts[v];
      last = counts[v];
    }
    const int64_t step = used <= 1 ? 0 : (total - last) / 255;
    if (step == 0) {
      for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(v);
      continue;
    }
    int64_t n = step / 2;
    for (int v = 0; v < 256; ++v) {
      table[v] = static_cast<uint8_t>(std::min<int64_t>(n / step, 255));  // point() clips its table to 8 bits
      n += counts[v];
    }
  }
  applyTables(image, tables);
}

void invert(ImageU8 image) {
  uint8_t table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(255 - v);
  applyTable(image, table);
}

void posterize(ImageU8 image, int bits) {
  if (bits >= 8) return;
  const int mask = ~((1 << (8 - std::max(bits, 0))) - 1);
  uint8_t table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(v & mask);
  applyTable(image, table);
}

void solarize(ImageU8 image, int threshold) {
  uint8_t table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(v < threshold ? v : 255 - v);
  applyTable(image, table);
}

void solarizeAdd(ImageU8 image, int add, int threshold) {
  uint8_t table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<uint8_t>(v < threshold ? std::min(255, v + add) : v);
  applyTable(image, table);
}

void enhanceColor(ImageU8 image, double factor, uint8_t* scratch) {
  if (image.channels != 3) return;  // a grey image is its own grey version
  const int64_t count = pixelCount(image);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t grey = luma(image.pixels + i * 3);
    scratch[i * 3] = scratch[i * 3 + 1] = scratch[i * 3 + 2] = grey;
  }
  blend(image, scratch, false, factor);
}

void enhanceContrast(ImageU8 image, double factor) {
  const int64_t count = pixelCount(image);
  if (count == 0) return;
  int64_t counts[256] = {0};
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* pixel = image.pixels + i * image.channels;
    ++counts[image.channels == 3 ? luma(pixel) : pixel[0]];
  }
  double sum = 0;
  for (int v = 0; v < 256; ++v) sum += static_cast<double>(v) * static_cast<double>(counts[v]);
  const uint8_t mean = static_cast<uint8_t>(static_cast<int>(sum / static_cast<double>(count) + 0.5));
  const uint8_t degenerate[4] = {mean, mean, mean, mean};
  blend(image, degenerate, true, factor);
}

void enhanceBrightness(ImageU8 image, double factor) {
  const uint8_t black[4] = {0, 0, 0, 0};
  blend(image, black, true, factor);
}

void enhanceSharpness(ImageU8 image, double factor, uint8_t* scratch) {
  const int64_t h = image.height, w = image.width, channels = image.channels, row = w * channels;
  std::memcpy(scratch, image.pixels, static_cast<size_t>(h * row));
  const float side = 1.0f / 13.0f, centre = 5.0f / 13.0f;
  for (int64_t y = 1; y + 1 < h; ++y) {
    const uint8_t* above = image.pixels + (y - 1) * row;
    const uint8_t* here = image.pixels + y * row;
    const uint8_t* below = image.pixels + (y + 1) * row;
    for (int64_t x = 1; x + 1 < w; ++x) {
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t at = x * channels + c, d = channels;
        // PIL's ImagingFilter3x3: rows y+1, y, y−1 in that order, each left to right, in float32, +0.5, clipped.
        float sum = 0.5f;
        sum += static_cast<float>(below[at - d]) * side + static_cast<float>(below[at]) * side +
               static_cast<float>(below[at + d]) * side;
        sum += static_cast<float>(here[at - d]) * side + static_cast<float>(here[at]) * centre +
               static_cast<float>(here[at + d]) * side;
        sum += static_cast<float>(above[at - d]) * side + static_cast<float>(above[at]) * side +
               static_cast<float>(above[at + d]) * side;
        sum = std::min(std::max(sum, 0.0f), 255.0f);
        scratch[y * row + at] = static_cast<uint8_t>(sum);
      }
    }
  }
  blend(image, scratch, false, factor);
}

namespace {

// Image.transform's generic loop (Geometry.c, ImagingGenericTransform with affine_transform): each output pixel's
// centre mapped into the input; outside the input the fill, inside it `sample(xf, yf, dx, dy, out)`, given the
// position less half a pixel split into its floor (xf, yf) and fraction (dx, dy).
template <typename Sample>
void affineTransform(ImageU8 image, const double matrix[6], const uint8_t* fill, const Sample& sample) {
  const int64_t h = image.height, w = image.width, channels = image.channels;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* out = image.pixels + (y * w + x) * channels;
      const double xo = static_cast<double>(x) + 0.5, yo = static_cast<double>(y) + 0.5;
      const double xin = matrix[0] * xo + matrix[1] * yo + matrix[2];
      const double yin = matrix[3] * xo + matrix[4] * yo + matrix[5];
      if (xin < 0.0 || xin >= static_cast<double>(w) || yin < 0.0 || yin >= static_cast<double>(h)) {
        for (int64_t c = 0; c < channels; ++c) out[c] = fill[c];
        continue;
      }
      const double xs = xin - 0.5, ys = yin - 0.5;
      const int64_t xf = static_cast<int64_t>(std::floor(xs)), yf = static_cast<int64_t>(std::floor(ys));
      sample(xf, yf, xs - static_cast<double>(xf), ys - static_cast<double>(yf), out);
    }
  }
}

// Geometry.c's BICUBIC: the cubic through v1..v4 at d in [0, 1) between v2 and v3.
double pilCubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

}  // namespace

void affineBilinear(const uint8_t* source, ImageU8 image, const double matrix[6], const uint8_t* fill) {
  const int64_t h = image.height, w = image.width, channels = image.channels;
  const auto row = [&](int64_t y) { return source + y * w * channels; };
  affineTransform(image, matrix, fill, [&](int64_t xf, int64_t yf, double dx, double dy, uint8_t* out) {
    const int64_t x0 = std::clamp<int64_t>(xf, 0, w - 1), x1 = std::clamp<int64_t>(xf + 1, 0, w - 1);
    const uint8_t* top = row(std::clamp<int64_t>(yf, 0, h - 1));
    const bool hasBelow = yf + 1 >= 0 && yf + 1 < h;
    const uint8_t* bottom = hasBelow ? row(yf + 1) : nullptr;
    for (int64_t c = 0; c < channels; ++c) {
      const double a = top[x0 * channels + c], b = top[x1 * channels + c];
      const double upper = a + (b - a) * dx;
      double lower = upper;
      if (hasBelow) {
        const double p = bottom[x0 * channels + c], q = bottom[x1 * channels + c];
        lower = p + (q - p) * dx;
      }
      out[c] = static_cast<uint8_t>(upper + (lower - upper) * dy);
    }
  });
}

void affineBicubic(const uint8_t* source, ImageU8 image, const double matrix[6], const uint8_t* fill) {
  const int64_t h = image.height, w = image.width, channels = image.channels;
  const auto row = [&](int64_t y) { return source + y * w * channels; };
  affineTransform(image, matrix, fill, [&](int64_t xf, int64_t yf, double dx, double dy, uint8_t* out) {
    const int64_t left = xf - 1, top = yf - 1;
    int64_t columns[4];
    for (int k = 0; k < 4; ++k) columns[k] = std::clamp<int64_t>(left + k, 0, w - 1) * channels;
    // Row k's source: the first clamped into the image, a further one outside it repeats the row before.
    const uint8_t* rows[4] = {row(std::clamp<int64_t>(top, 0, h - 1)), nullptr, nullptr, nullptr};
    for (int k = 1; k < 4; ++k) rows[k] = top + k >= 0 && top + k < h ? row(top + k) : nullptr;
    for (int64_t c = 0; c < channels; ++c) {
      double across[4];
      for (int k = 0; k < 4; ++k) {
        const uint8_t* in = rows[k];
        across[k] = in ? pilCubic(in[columns[0] + c], in[columns[1] + c], in[columns[2] + c], in[columns[3] + c], dx)
                       : across[k - 1];
      }
      const double value = pilCubic(across[0], across[1], across[2], across[3], dy);
      out[c] = value <= 0.0 ? 0 : value >= 255.0 ? 255 : static_cast<uint8_t>(value);
    }
  });
}

}  // namespace pace::kernels
