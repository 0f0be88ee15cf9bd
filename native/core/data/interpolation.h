#pragma once
// The resampling a training augmentation uses, as timm's `interpolation` (create_transform's argument, DeiT's and
// NOAH's --train-interpolation): bilinear (timm's default), bicubic (DeiT's, NOAH's) or, per use, either at random
// (timm's train.py default, random.choice of the two). It applies to the random resized crop and to RandAugment's
// rotate, shear and translate.
#include <string>

#include "data/pil_resize.h"

namespace pace::data {

enum class Interpolation { Bilinear, Bicubic, Random };

// 'bilinear', 'bicubic' or 'random'; throws OptionError naming `field` otherwise.
Interpolation parseInterpolation(const std::string& name, const std::string& field);

// The filter of one use; Random takes bicubic when `uniform` (in [0, 1)) is at least 1/2.
PillowFilter filterFor(Interpolation interpolation, double uniform);

}  // namespace pace::data
