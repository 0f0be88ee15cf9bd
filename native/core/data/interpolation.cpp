#include "data/interpolation.h"

#include "errors.h"

namespace pace::data {

Interpolation parseInterpolation(const std::string& name, const std::string& field) {
  if (name == "bilinear") return Interpolation::Bilinear;
  if (name == "bicubic") return Interpolation::Bicubic;
  if (name == "random") return Interpolation::Random;
  throw OptionError(field + " must be 'bilinear', 'bicubic' or 'random'; got '" + name + "'");
}

PillowFilter filterFor(Interpolation interpolation, double uniform) {
  switch (interpolation) {
    case Interpolation::Bilinear:
      return PillowFilter::Bilinear;
    case Interpolation::Bicubic:
      return PillowFilter::Bicubic;
    case Interpolation::Random:
      break;
  }
  return uniform < 0.5 ? PillowFilter::Bilinear : PillowFilter::Bicubic;
}

}  // namespace pace::data
