#pragma once
// timm's RandomResizedCropAndInterpolation (torchvision's RandomResizedCrop) on stored uint8 pixels: a box of
// random area and aspect ratio, resized to the model's size as PIL's resize (bilinear, bicubic or either at random;
// antialiased when shrinking), then an optional horizontal flip.
#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "data/interpolation.h"

namespace pace::data {

struct ResizedCropConfig {
  std::array<double, 2> scale{0.08, 1.0};             // of the image's area
  std::array<double, 2> ratio{3.0 / 4.0, 4.0 / 3.0};  // width / height, drawn log-uniformly
  Interpolation interpolation = Interpolation::Bilinear;
  void validate() const;
};

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// timm's get_params for an image of height × width from 22 uniforms in [0, 1): ten attempts of (area, log-ratio),
// the first whose rounded box fits is placed with the last two (randint over the free rows and columns); when none
// fits, the centre crop at the nearest allowed ratio.
CropBox resizedCropBox(int64_t height, int64_t width, const ResizedCropConfig& config, const double* uniforms);
constexpr int64_t kResizedCropDraws = 22;

struct ResizedCropResult {
  at::Tensor images;   // uint8 [N, size, size, C]
  at::Tensor boxes;    // int64 [N, 4]: top, left, height, width of each box in its image
  at::Tensor flipped;  // bool [N]
};

// Resize of one uint8 image [H, W, C] to size × size as Pillow's with `filter`: its own integer arithmetic on the
// CPU; on a device its two 8-bit passes with libtorch's float weights (a level from Pillow's on a few % of values,
// bicubic up to two).
at::Tensor resizeSquareAsPillow(const at::Tensor& image, int64_t size, PillowFilter filter);

// A random resized crop of each of images [N, H, W, C] (uint8) to size × size, flipped horizontally with
// probability 1/2 when `flip`; every draw from `generator` (22 uniforms per image, then the flips, then, for a
// random interpolation, one uniform per image choosing its filter).
ResizedCropResult randomResizedCropFlip(const at::Tensor& images, int64_t size, const ResizedCropConfig& config,
                                        bool flip, at::Generator generator);
// The same over images of their own sizes [H_i, W_i, C] (data/packed_images.h), each box drawn in its own image;
// with no images, `images` of the result is left undefined (their channels are not known here).
ResizedCropResult randomResizedCropFlip(const std::vector<at::Tensor>& images, int64_t size,
                                        const ResizedCropConfig& config, bool flip, at::Generator generator);

}  // namespace pace::data
