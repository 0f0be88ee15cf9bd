#pragma once
// RandAugment as timm builds it from a config string ('rand-m9-mstd0.5-inc1'), on stored uint8 pixels
// [N, H, W, C] (C = 1 or 3) on the CPU: per image, `numLayers` operations drawn uniformly with replacement from
// the set, each applied with probability `probability` at a magnitude drawn around `magnitude`, mapped to the
// operation's parameter as timm's level functions do (_LEVEL_DENOM = 10, random negation of the signed ones).
// The pixel loops are PIL's, in native/kernels/cpu/image_ops.cpp.
#include <ATen/ATen.h>

#include <array>
#include <string>
#include <vector>

#include "data/interpolation.h"

namespace pace::data {

struct RandAugmentConfig {
  int64_t numLayers = 2;         // 'n'
  double magnitude = 10;         // 'm' (timm's default is _LEVEL_DENOM)
  double magnitudeStd = 0;       // 'mstd': Gaussian noise on the magnitude; infinite: uniform in [0, magnitude]
  double magnitudeMax = 10;      // 'mmax': the magnitude is clipped to [0, magnitudeMax]
  double probability = 0.5;      // 'p': of applying each drawn operation
  bool increasing = false;       // 'inc1': the set whose severity increases with the magnitude
  std::vector<std::string> ops;  // the operation set (timm's _RAND_TRANSFORMS or _RAND_INCREASING_TRANSFORMS)
  // Of rotate, shear and translate (not part of the config string: timm's hparams['interpolation']).
  Interpolation interpolation = Interpolation::Bilinear;
  void validate() const;
};

// Parses timm's config string: 'rand' then '-'-separated sections m<int>, n<int>, p<float>, mstd<float> (above 100:
// uniform), mmax<int>, inc<0|1>. Throws OptionError naming an unknown or malformed section; the weighted and
// 3-Augment sets ('t…') are not offered. (timm reads any 'inc' section as increasing; 'inc0' here is the plain set.)
RandAugmentConfig parseRandAugment(const std::string& config);

// The operation's argument at a (noised, clipped) magnitude, negated where timm negates it at random: the rotation
// in degrees, the shear factor, the translation as a fraction of the size, the enhancement factor, the posterize
// bits, the solarize threshold, the solarize-add amount; 0 for the operations without one.
double randAugmentArgument(const std::string& op, double magnitude, bool negate);

// One operation on one image [H, W, C] (C = 1 or 3) at that magnitude and sign; `fill` is the colour of the area
// an affine operation uncovers (timm: the normalisation mean × 255, rounded), `filter` its resampling. Returns a
// new image, in the image's own mode as PIL computes it (grey stays grey, filled with fill[0]).
at::Tensor applyRandAugmentOp(const at::Tensor& image, const std::string& op, double magnitude, bool negate,
                              const std::array<uint8_t, 3>& fill, PillowFilter filter = PillowFilter::Bilinear);

// RandAugment over a batch of uint8 images [N, H, W, C] on the CPU (C = 1 or 3), every draw from `generator`
// (a fixed number of draws per image, whatever is applied; a random interpolation adds one per operation, after
// the others). Returns the augmented images; grey ones come back RGB when the fill is not grey, as timm's pipeline
// converts images to RGB before augmenting them.
at::Tensor randAugment(const at::Tensor& images, const RandAugmentConfig& config, const std::array<uint8_t, 3>& fill,
                       at::Generator generator);

}  // namespace pace::data
