#include "peft/pace.h"

#include <set>

#include "errors.h"
#include "models/layers.h"

namespace pace::peft {

void PaceConfig::validate() const {
  if (!(sigma >= 0)) throw OptionError("pace.sigma must be >= 0, got " + std::to_string(sigma));
  if (!(lambda >= 0)) throw OptionError("pace.lambda must be >= 0, got " + std::to_string(lambda));
  if (blockStart < -1) throw OptionError("pace.blockStart must be >= 0");
  if (kind == NoiseKind::Dropout && sigma >= 1)
    throw OptionError("pace.sigma is a drop rate for dropout noise: it must be < 1");
  if (lazyInterval < 1) throw OptionError("pace.lazyInterval must be >= 1");
  if (variant == PaceVariant::Fast && datasetSize < 1)
    throw OptionError("pace.datasetSize (the number of training samples) is required for the fast variant");
}

int64_t firstNoisyBlock(models::Backbone& model, const PaceConfig& config) {
  return config.blockStart >= 0 ? config.blockStart : (model.family() == "vit" ? 1 : 0);
}

std::map<std::string, double> sigmaPerLinear(models::Backbone& model, const PaceConfig& config) {
  const auto linears = model.linears();
  std::vector<std::string> units;
  std::string headUnit;
  const std::vector<std::string> headNames = model.headParameterNames();
  for (const auto& [path, linear] : linears) {
    const std::string unit = model.noiseUnitOf(path);
    const bool isHead = std::find(headNames.begin(), headNames.end(), path + ".weight") != headNames.end();
    if (isHead) {
      headUnit = unit;
    } else if (std::find(units.begin(), units.end(), unit) == units.end()) {
      units.push_back(unit);
    }
  }
  if (!headUnit.empty()) units.push_back(headUnit);
  const int64_t start = firstNoisyBlock(model, config);
  const int64_t n = static_cast<int64_t>(units.size()) - start;
  std::map<std::string, double> unitSigma;
  for (int64_t i = 0; i < static_cast<int64_t>(units.size()); ++i) {
    const int64_t k = i - start;
    double sigma = 0.0;
    if (k >= 0 && n > 0) {
      switch (config.schedule) {
        case SigmaSchedule::Decreasing:
          sigma = config.sigma * static_cast<double>(n - k) / static_cast<double>(n);
          break;
        case SigmaSchedule::Shared:
          sigma = config.sigma;
          break;
        case SigmaSchedule::Increasing:
          sigma = config.sigma * static_cast<double>(k + 1) / static_cast<double>(n);
          break;
      }
    }
    unitSigma[units[i]] = sigma;
  }
  std::map<std::string, double> result;
  for (const auto& [path, linear] : linears) result[path] = unitSigma[model.noiseUnitOf(path)];
  return result;
}

torch::Tensor consistencyLoss(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).sum(1).mean(); }

NoiseScope::NoiseScope(models::Backbone& model, PaceNoise& noise) {
  const std::vector<std::string> headNames = model.headParameterNames();
  for (const auto& [path, linear] : model.linears()) {
    linear->noise = &noise;
    linear->noiseOnWholeOutput = std::find(headNames.begin(), headNames.end(), path + ".weight") != headNames.end();
    linears_.push_back(linear);
  }
}

NoiseScope::~NoiseScope() {
  for (auto* linear : linears_) {
    linear->noise = nullptr;
    linear->noiseOnWholeOutput = false;
  }
}

}  // namespace pace::peft
