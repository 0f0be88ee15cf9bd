#include "train/schedule.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "errors.h"

namespace pace::train {

namespace {

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace

double CosineSchedule::valueAt(double t) const {
  if (t < warmupEpochs) return warmupLr + t * ((lr - warmupLr) / warmupEpochs);
  if (t >= epochs) return minLr;
  return minLr + 0.5 * (lr - minLr) * (1 + std::cos(M_PI * t / epochs));
}

// Epoch 0 runs at the rate timm's constructor sets: warm-up's start when there is a warm-up, else the peak.
double CosineSchedule::forEpoch(int64_t epoch) const {
  if (epoch <= 0) return warmupEpochs > 0 ? warmupLr : lr;
  return valueAt(static_cast<double>(epoch - 1));
}

// timm stepped per update (t_in_epochs = False) counts in updates: warmup_t and t_initial are epochs times the
// updates per epoch, and its arithmetic on those counts is what is reproduced here, operation for operation.
double CosineSchedule::forStep(int64_t step, int64_t stepsPerEpoch) const {
  const double t = static_cast<double>(step);
  const double warmupSteps = warmupEpochs * static_cast<double>(stepsPerEpoch);
  const double total = epochs * static_cast<double>(stepsPerEpoch);
  if (t < warmupSteps) return warmupLr + t * ((lr - warmupLr) / warmupSteps);
  if (t >= total) return minLr;
  return minLr + 0.5 * (lr - minLr) * (1 + std::cos(M_PI * t / total));
}

void CosineSchedule::validate() const {
  if (!(lr > 0)) throw OptionError("schedule.lr must be > 0");
  if (!(epochs >= 1)) throw OptionError("schedule.epochs must be >= 1");
  if (!(warmupEpochs >= 0)) throw OptionError("schedule.warmupEpochs must be >= 0");
  if (!(minLr >= 0)) throw OptionError("schedule.minLr must be >= 0");
  if (!(warmupLr >= 0)) throw OptionError("schedule.warmupLr must be >= 0");
  // Shapes that do not run down from the peak (timm takes them; a low lr met them through the defaults, the
  // reference's): refused, naming what to change.
  if (minLr > lr)
    throw OptionError("schedule.minLr " + number(minLr) + " is above the peak rate lr " + number(lr) +
                      ": the cosine would rise (the default minLr is 1e-05, the reference's; give one below the peak)");
  if (warmupLr > lr)
    throw OptionError(
        "schedule.warmupLr " + number(warmupLr) + " is above the peak rate lr " + number(lr) +
        ": the warm-up would fall (the default warmupLr is 1e-06, the reference's; give one below the peak)");
}

}  // namespace pace::train
