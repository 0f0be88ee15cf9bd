#pragma once
// RandAugment's pixel operations on one uint8 image, as PIL computes them (timm applies them to PIL images):
// interleaved pixels [height, width, channels], channels 1 (PIL's "L") or 3 ("RGB"). Plain loops, no libtorch;
// the choice of operation and its parameter is the core's (data/rand_augment.cpp).
#include <cstdint>

namespace pace::kernels {

struct ImageU8 {
  uint8_t* pixels;
  int64_t height;
  int64_t width;
  int64_t channels;
};

// ImageOps.autocontrast (no cutoff): each channel's [lowest, highest] stretched to [0, 255]; a flat channel is kept.
void autoContrast(ImageU8 image);
// ImageOps.equalize: each channel through PIL's cumulative-histogram table.
void equalize(ImageU8 image);
// ImageOps.invert: 255 − v.
void invert(ImageU8 image);
// ImageOps.posterize: the `bits` most significant bits kept (0 ≤ bits ≤ 8).
void posterize(ImageU8 image, int bits);
// ImageOps.solarize: v ≥ threshold → 255 − v.
void solarize(ImageU8 image, int threshold);
// timm's solarize_add: v < threshold → min(255, v + add).
void solarizeAdd(ImageU8 image, int add, int threshold);

// ImageEnhance's blends Image.blend(degenerate, image, factor), in PIL's float32 arithmetic, truncated (clipped to
// [0, 255] outside 0 ≤ factor ≤ 1): Color (degenerate: the image in grey, ITU-R 601-2 luma in PIL's fixed point;
// a grey image is unchanged), Contrast (the grey image's mean, rounded), Brightness (black), Sharpness (PIL's
// SMOOTH 3×3 filter, border pixels kept). `scratch` holds height·width·channels bytes.
void enhanceColor(ImageU8 image, double factor, uint8_t* scratch);
void enhanceContrast(ImageU8 image, double factor);
void enhanceBrightness(ImageU8 image, double factor);
void enhanceSharpness(ImageU8 image, double factor, uint8_t* scratch);

// Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=fill): output pixel (x, y) samples the input at
// (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f) bilinearly (PIL's edge clamping, truncated to uint8); samples
// outside the input take `fill` (one value per channel). `source` and `image` must not overlap.
void affineBilinear(const uint8_t* source, ImageU8 image, const double matrix[6], const uint8_t* fill);

// The same with BICUBIC (Geometry.c's bicubic_filter8 and bicubic_filter32RGB): a 4 × 4 neighbourhood with PIL's
// cubic (a = −1), columns clamped to the image, the first row clamped and each further row outside it repeating the
// one above; clipped to [0, 255], then truncated.
void affineBicubic(const uint8_t* source, ImageU8 image, const double matrix[6], const uint8_t* fill);

}  // namespace pace::kernels
