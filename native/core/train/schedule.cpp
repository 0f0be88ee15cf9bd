#include "train/schedule.h"

#include <cmath>
#include <string>

#include "errors.h"

namespace pace::train {

double CosineSchedule::valueAt(double t) const {
  if (t < warmupEpochs) return warmupLr + t * ((lr - warmupLr) / warmupEpochs);
  if (t >= epochs) return minLr;
  return minLr + 0.5 * (lr - minLr) * (1 + std::cos(M_PI * t / epochs));
}

double CosineSchedule::forEpoch(int64_t epoch) const { return epoch <= 0 ? warmupLr : valueAt(epoch - 1); }

double CosineSchedule::forStep(int64_t step, int64_t stepsPerEpoch) const {
  return valueAt(static_cast<double>(step) / static_cast<double>(stepsPerEpoch));
}

void CosineSchedule::validate() const {
  if (!(lr > 0)) throw OptionError("schedule.lr must be > 0");
  if (!(epochs >= 1)) throw OptionError("schedule.epochs must be >= 1");
  if (!(warmupEpochs >= 0)) throw OptionError("schedule.warmupEpochs must be >= 0");
  if (!(minLr >= 0)) throw OptionError("schedule.minLr must be >= 0");
  if (!(warmupLr >= 0)) throw OptionError("schedule.warmupLr must be >= 0");
}

}  // namespace pace::train
