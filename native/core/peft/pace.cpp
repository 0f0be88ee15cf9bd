#include "peft/pace.h"

#include <set>

#include "errors.h"

namespace pace::peft {

namespace {

template <typename Value>
using NameTable = std::vector<std::pair<const char*, Value>>;

const NameTable<NoiseKind> kNoiseKinds = {
    {"multiplicative", NoiseKind::Multiplicative}, {"additive", NoiseKind::Additive}, {"dropout", NoiseKind::Dropout}};
const NameTable<NoiseShape> kNoiseShapes = {{"BC", NoiseShape::PerRow}, {"BTC", NoiseShape::PerToken}};
const NameTable<SigmaSchedule> kSigmaSchedules = {{"decreasing", SigmaSchedule::Decreasing},
                                                  {"shared", SigmaSchedule::Shared},
                                                  {"increasing", SigmaSchedule::Increasing}};
const NameTable<PaceVariant> kVariants = {{"pace", PaceVariant::Pace},
                                          {"lazy", PaceVariant::Lazy},
                                          {"fast", PaceVariant::Fast},
                                          {"fpa", PaceVariant::Fpa},
                                          {"noise", PaceVariant::Noise}};
const NameTable<NoiseTarget> kNoiseTargets = {{"adapter", NoiseTarget::AdapterOutput}, {"h", NoiseTarget::WholeOutput}};

template <typename Value>
Value fromTable(const NameTable<Value>& table, const std::string& name, const char* what) {
  std::string known;
  for (const auto& [candidate, value] : table) {
    if (name == candidate) return value;
    known += (known.empty() ? "'" : ", '") + std::string(candidate) + "'";
  }
  throw OptionError(std::string(what) + " must be one of " + known + "; got '" + name + "'");
}

template <typename Value>
std::string nameIn(const NameTable<Value>& table, Value value) {
  for (const auto& [name, candidate] : table) {
    if (candidate == value) return name;
  }
  return "?";
}

}  // namespace

NoiseKind noiseKindFromName(const std::string& name) { return fromTable(kNoiseKinds, name, "pace.noise"); }
NoiseShape noiseShapeFromName(const std::string& name) { return fromTable(kNoiseShapes, name, "pace.noiseShape"); }
SigmaSchedule sigmaScheduleFromName(const std::string& name) {
  return fromTable(kSigmaSchedules, name, "pace.sigmaSchedule");
}
PaceVariant paceVariantFromName(const std::string& name) { return fromTable(kVariants, name, "pace.variant"); }
NoiseTarget noiseTargetFromName(const std::string& name) { return fromTable(kNoiseTargets, name, "pace.noiseOn"); }

std::string nameOf(NoiseKind kind) { return nameIn(kNoiseKinds, kind); }
std::string nameOf(NoiseShape shape) { return nameIn(kNoiseShapes, shape); }
std::string nameOf(SigmaSchedule schedule) { return nameIn(kSigmaSchedules, schedule); }
std::string nameOf(PaceVariant variant) { return nameIn(kVariants, variant); }
std::string nameOf(NoiseTarget target) { return nameIn(kNoiseTargets, target); }

void PaceConfig::validate() const {
  if (!(sigma >= 0)) throw OptionError("pace.sigma must be >= 0, got " + std::to_string(sigma));
  if (!(lambda >= 0)) throw OptionError("pace.lambda must be >= 0, got " + std::to_string(lambda));
  if (blockStart && *blockStart < 0) throw OptionError("pace.blockStart must be >= 0");
  if (kind == NoiseKind::Dropout && sigma >= 1)
    throw OptionError("pace.sigma is a drop rate for dropout noise: it must be < 1");
  if (lazyInterval < 1) throw OptionError("pace.lazyInterval must be >= 1");
  if (!(adapterL1 >= 0)) throw OptionError("pace.adapterL1 must be >= 0");
  if (variant == PaceVariant::Noise && lambda != 0)
    throw OptionError("pace.lambda must be 0 for the noise ablation (variant 'noise' has no consistency term)");
  if (copies < 2 || copies > 16) throw OptionError("pace.copies must lie in [2, 16]; got " + std::to_string(copies));
  if (copies != 2 && variant != PaceVariant::Pace && variant != PaceVariant::Lazy)
    throw OptionError("pace.copies other than 2 needs the pace or lazy variant, which forward copies of the batch");
  if (variant == PaceVariant::Fast && datasetSize < 1)
    throw OptionError("pace.datasetSize (the number of training samples) is required for the fast variant");
}

int64_t firstNoisyBlock(const models::Backbone& model, const PaceConfig& config) {
  return config.blockStart.value_or(model.defaultNoiseBlockStart());
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

torch::Tensor consistencyAmong(const torch::Tensor& views, int64_t copies) {
  const int64_t batch = views.size(0) / copies;
  if (copies == 2) return consistencyLoss(views.slice(0, 0, batch), views.slice(0, batch));
  torch::Tensor sum;
  int64_t pairs = 0;
  for (int64_t i = 0; i < copies; ++i) {
    for (int64_t j = i + 1; j < copies; ++j, ++pairs) {
      const torch::Tensor term =
          consistencyLoss(views.slice(0, i * batch, (i + 1) * batch), views.slice(0, j * batch, (j + 1) * batch));
      sum = sum.defined() ? sum + term : term;
    }
  }
  return sum / static_cast<double>(pairs);
}

}  // namespace pace::peft
