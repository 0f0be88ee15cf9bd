#include "data/rand_augment.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu/image_ops.h"
#include "errors.h"
#include "tensor/dtype.h"

namespace pace::data {

namespace {

constexpr double kLevelDenominator = 10.0;  // timm's _LEVEL_DENOM

// timm's _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS, in timm's order.
const std::vector<std::string> kPlainOps = {"AutoContrast", "Equalize",    "Invert", "Rotate",        "Posterize",
                                            "Solarize",     "SolarizeAdd", "Color",  "Contrast",      "Brightness",
                                            "Sharpness",    "ShearX",      "ShearY", "TranslateXRel", "TranslateYRel"};
const std::vector<std::string> kIncreasingOps = {"AutoContrast",
                                                 "Equalize",
                                                 "Invert",
                                                 "Rotate",
                                                 "PosterizeIncreasing",
                                                 "SolarizeIncreasing",
                                                 "SolarizeAdd",
                                                 "ColorIncreasing",
                                                 "ContrastIncreasing",
                                                 "BrightnessIncreasing",
                                                 "SharpnessIncreasing",
                                                 "ShearX",
                                                 "ShearY",
                                                 "TranslateXRel",
                                                 "TranslateYRel"};

bool isKnownOp(const std::string& op) {
  for (const auto* set : {&kPlainOps, &kIncreasingOps})
    for (const auto& name : *set)
      if (name == op) return true;
  return false;
}

// Python's round(value, 15): the nearest double to the value correctly rounded to 15 decimals.
double roundTo15(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.15f", value);
  return std::strtod(text, nullptr);
}

int64_t parseInteger(const std::string& text, const std::string& section) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 9)
    throw OptionError("RandAugment section '" + section + "' needs a whole number");
  return std::stoll(text);
}

double parseFloat(const std::string& text, const std::string& section) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
    throw OptionError("RandAugment section '" + section + "' needs a number");
  return value;
}

std::array<double, 6> rotationMatrix(double degrees, int64_t height, int64_t width) {
  // PIL's Image.rotate without expand: about the centre (w/2, h/2), the inverse map of a counter-clockwise turn.
  double turned = std::fmod(degrees, 360.0);  // Python's degrees % 360.0
  if (turned != 0.0 && turned < 0.0) turned += 360.0;
  const double angle = -(turned * (M_PI / 180.0));  // -math.radians(angle)
  std::array<double, 6> m = {roundTo15(std::cos(angle)),  roundTo15(std::sin(angle)), 0.0,
                             roundTo15(-std::sin(angle)), roundTo15(std::cos(angle)), 0.0};
  const double cx = static_cast<double>(width) / 2.0, cy = static_cast<double>(height) / 2.0;
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return m;
}

// Applies one operation in place; `scratch` holds one image's bytes.
void applyOp(kernels::ImageU8 image, const std::string& op, double argument, const std::array<uint8_t, 3>& fill,
             PillowFilter filter, uint8_t* scratch) {
  const size_t bytes = static_cast<size_t>(image.height * image.width * image.channels);
  const auto affine = [&](const std::array<double, 6>& matrix) {
    std::memcpy(scratch, image.pixels, bytes);
    if (filter == PillowFilter::Bicubic) {
      kernels::affineBicubic(scratch, image, matrix.data(), fill.data());
    } else {
      kernels::affineBilinear(scratch, image, matrix.data(), fill.data());
    }
  };
  if (op == "AutoContrast") {
    kernels::autoContrast(image);
  } else if (op == "Equalize") {
    kernels::equalize(image);
  } else if (op == "Invert") {
    kernels::invert(image);
  } else if (op == "Rotate") {
    if (std::fmod(argument, 360.0) != 0.0) affine(rotationMatrix(argument, image.height, image.width));
  } else if (op == "Posterize" || op == "PosterizeIncreasing") {
    kernels::posterize(image, static_cast<int>(argument));
  } else if (op == "Solarize" || op == "SolarizeIncreasing") {
    kernels::solarize(image, static_cast<int>(argument));
  } else if (op == "SolarizeAdd") {
    kernels::solarizeAdd(image, static_cast<int>(argument), 128);
  } else if (op == "Color" || op == "ColorIncreasing") {
    kernels::enhanceColor(image, argument, scratch);
  } else if (op == "Contrast" || op == "ContrastIncreasing") {
    kernels::enhanceContrast(image, argument);
  } else if (op == "Brightness" || op == "BrightnessIncreasing") {
    kernels::enhanceBrightness(image, argument);
  } else if (op == "Sharpness" || op == "SharpnessIncreasing") {
    kernels::enhanceSharpness(image, argument, scratch);
  } else if (op == "ShearX") {
    affine({1, argument, 0, 0, 1, 0});
  } else if (op == "ShearY") {
    affine({1, 0, 0, argument, 1, 0});
  } else if (op == "TranslateXRel") {
    affine({1, 0, argument * static_cast<double>(image.width), 0, 1, 0});
  } else if (op == "TranslateYRel") {
    affine({1, 0, 0, 0, 1, argument * static_cast<double>(image.height)});
  } else {
    throw OptionError("unknown RandAugment operation '" + op + "'");
  }
}

void checkImages(const at::Tensor& images, int64_t dims) {
  const bool shaped = images.dim() == dims && (images.size(dims - 1) == 1 || images.size(dims - 1) == 3);
  if (images.scalar_type() != at::kByte || !shaped)
    throw ShapeError(std::string("RandAugment needs uint8 images ") + (dims == 4 ? "[N, H, W, C]" : "[H, W, C]") +
                     " with C = 1 or 3; got " + dtypeName(images.scalar_type()) + " " +
                     shapeToString(images.sizes().vec()));
}

// A copy of the batch to augment in place, on the CPU. timm's pipeline augments images converted to RGB: a grey
// batch filled with a colour is augmented as RGB (what rotations and shears uncover takes the fill's colour, not
// its first channel's level on all three), and comes back so.
at::Tensor augmentedCopy(const at::Tensor& images, const std::array<uint8_t, 3>& fill) {
  const at::Tensor cpu = images.cpu();
  const bool greyFill = fill[0] == fill[1] && fill[1] == fill[2];
  if (cpu.size(-1) != 1 || greyFill) return cpu.contiguous().clone();
  std::vector<int64_t> rgb = cpu.sizes().vec();
  rgb.back() = 3;
  return cpu.expand(rgb).contiguous();  // (an expanded view made contiguous is a copy)
}

}  // namespace

// Each operation is a whole-image one per image and step: n in the millions would stall a fit with no error.
constexpr int64_t kMaxLayers = 100;

void RandAugmentConfig::validate() const {
  if (numLayers < 0) throw OptionError("RandAugment's number of operations (n) must be >= 0");
  if (numLayers > kMaxLayers)
    throw OptionError("RandAugment's number of operations (n) must be at most " + std::to_string(kMaxLayers) +
                      " (timm's configs use 2 or 3); got " + std::to_string(numLayers));
  if (!(magnitude >= 0)) throw OptionError("RandAugment's magnitude (m) must be >= 0");
  if (!(magnitudeStd >= 0)) throw OptionError("RandAugment's magnitude noise (mstd) must be >= 0");
  if (!(magnitudeMax >= 0)) throw OptionError("RandAugment's magnitude bound (mmax) must be >= 0");
  if (!(probability >= 0 && probability <= 1)) throw OptionError("RandAugment's probability (p) must be in [0, 1]");
  if (ops.empty()) throw OptionError("RandAugment needs a set of operations");
  for (const auto& op : ops)
    if (!isKnownOp(op)) throw OptionError("unknown RandAugment operation '" + op + "'");
}

RandAugmentConfig parseRandAugment(const std::string& text) {
  RandAugmentConfig config;
  std::vector<std::string> sections;
  size_t start = 0;
  while (true) {
    const size_t dash = text.find('-', start);
    sections.push_back(text.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  if (sections.front() != "rand")
    throw OptionError("a RandAugment config starts with 'rand' (as timm's 'rand-m9-mstd0.5-inc1'); got '" + text + "'");
  for (size_t i = 1; i < sections.size(); ++i) {
    const std::string& section = sections[i];
    if (!section.empty() && section[0] == 't')
      throw OptionError("RandAugment section '" + section +
                        "': the weighted and 3-Augment operation sets are not offered (use the default set, or "
                        "inc1 for the increasing one)");
    const size_t digit = section.find_first_of("0123456789");
    if (digit == std::string::npos || digit == 0)
      throw OptionError("RandAugment section '" + section + "' is not one of m<int>, n<int>, p<float>, mstd<float>, " +
                        "mmax<int>, inc<0|1> (in '" + text + "')");
    const std::string key = section.substr(0, digit), value = section.substr(digit);
    if (key == "mstd") {
      const double std = parseFloat(value, section);
      config.magnitudeStd = std > 100 ? std::numeric_limits<double>::infinity() : std;
    } else if (key == "mmax") {
      const int64_t bound = parseInteger(value, section);
      config.magnitudeMax = bound == 0 ? kLevelDenominator : static_cast<double>(bound);  // timm: mmax or 10
    } else if (key == "inc") {
      config.increasing = parseInteger(value, section) != 0;
    } else if (key == "m") {
      config.magnitude = static_cast<double>(parseInteger(value, section));
    } else if (key == "n") {
      config.numLayers = parseInteger(value, section);
    } else if (key == "p") {
      config.probability = parseFloat(value, section);
    } else {
      throw OptionError("RandAugment section '" + section + "' is not one of m<int>, n<int>, p<float>, mstd<float>, " +
                        "mmax<int>, inc<0|1> (in '" + text + "')");
    }
  }
  config.ops = config.increasing ? kIncreasingOps : kPlainOps;
  config.validate();
  return config;
}

double randAugmentArgument(const std::string& op, double magnitude, bool negate) {
  const double level = magnitude / kLevelDenominator;
  const double sign = negate ? -1.0 : 1.0;
  if (op == "Rotate") return sign * (level * 30.0);
  if (op == "ShearX" || op == "ShearY") return sign * (level * 0.3);
  if (op == "TranslateXRel" || op == "TranslateYRel") return sign * (level * 0.45);
  if (op == "Posterize") return static_cast<double>(static_cast<int64_t>(level * 4));
  if (op == "PosterizeIncreasing") return 4.0 - static_cast<double>(static_cast<int64_t>(level * 4));
  if (op == "Solarize") return std::min(256.0, static_cast<double>(static_cast<int64_t>(level * 256)));
  if (op == "SolarizeIncreasing")
    return 256.0 - std::min(256.0, static_cast<double>(static_cast<int64_t>(level * 256)));
  if (op == "SolarizeAdd") return std::min(128.0, static_cast<double>(static_cast<int64_t>(level * 110)));
  if (op == "Color" || op == "Contrast" || op == "Brightness" || op == "Sharpness") return level * 1.8 + 0.1;
  if (op == "ColorIncreasing" || op == "ContrastIncreasing" || op == "BrightnessIncreasing" ||
      op == "SharpnessIncreasing")
    return std::max(0.1, 1.0 + sign * (level * 0.9));
  if (op == "AutoContrast" || op == "Equalize" || op == "Invert") return 0.0;
  throw OptionError("unknown RandAugment operation '" + op + "'");
}

at::Tensor applyRandAugmentOp(const at::Tensor& image, const std::string& op, double magnitude, bool negate,
                              const std::array<uint8_t, 3>& fill, PillowFilter filter) {
  checkImages(image, 3);
  if (!isKnownOp(op)) throw OptionError("unknown RandAugment operation '" + op + "'");
  at::Tensor out = image.cpu().contiguous().clone();
  std::vector<uint8_t> scratch(static_cast<size_t>(out.numel()));
  applyOp({out.data_ptr<uint8_t>(), out.size(0), out.size(1), out.size(2)}, op,
          randAugmentArgument(op, magnitude, negate), fill, filter, scratch.data());
  return out;
}

at::Tensor randAugment(const at::Tensor& images, const RandAugmentConfig& config, const std::array<uint8_t, 3>& fill,
                       at::Generator generator) {
  config.validate();
  checkImages(images, 4);
  const int64_t n = images.size(0), layers = config.numLayers;
  const auto doubles = at::TensorOptions().dtype(at::kDouble);
  // Per image and layer: the operation, whether it applies, its sign, a uniform magnitude; then a normal one.
  const at::Tensor uniforms = at::empty({n, layers, 4}, doubles).uniform_(0.0, 1.0, generator);
  const at::Tensor normals = at::empty({n, layers}, doubles).normal_(0.0, 1.0, generator);
  const bool randomFilter = config.interpolation == Interpolation::Random;
  const at::Tensor filterDraws =
      randomFilter ? at::empty({n, layers}, doubles).uniform_(0.0, 1.0, generator) : at::zeros({n, layers}, doubles);
  at::Tensor out = augmentedCopy(images, fill);
  if (layers == 0 || n == 0) return out;
  const int64_t h = out.size(1), w = out.size(2), channels = out.size(3), bytes = h * w * channels;
  const double* u = uniforms.data_ptr<double>();
  const double* z = normals.data_ptr<double>();
  const double* filterDraw = filterDraws.data_ptr<double>();
  uint8_t* pixels = out.data_ptr<uint8_t>();
  const int64_t count = static_cast<int64_t>(config.ops.size());
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> scratch(static_cast<size_t>(bytes));
    for (int64_t i = begin; i < end; ++i) {
      kernels::ImageU8 image{pixels + i * bytes, h, w, channels};
      for (int64_t l = 0; l < layers; ++l) {
        const double* draw = u + (i * layers + l) * 4;
        const std::string& op = config.ops[std::min(count - 1, static_cast<int64_t>(draw[0] * count))];
        if (config.probability < 1.0 && draw[1] > config.probability) continue;  // timm: random() > prob skips
        double magnitude = config.magnitude;
        if (std::isinf(config.magnitudeStd)) {
          magnitude = draw[3] * config.magnitude;  // random.uniform(0, m)
        } else if (config.magnitudeStd > 0) {
          magnitude = config.magnitude + config.magnitudeStd * z[i * layers + l];  // random.gauss(m, std)
        }
        magnitude = std::max(0.0, std::min(magnitude, config.magnitudeMax));
        applyOp(image, op, randAugmentArgument(op, magnitude, draw[2] > 0.5), fill,
                filterFor(config.interpolation, filterDraw[i * layers + l]), scratch.data());
      }
    }
  });
  return out;
}

}  // namespace pace::data
