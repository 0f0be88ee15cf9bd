#include "train/schedule.h"

#include <cmath>

namespace pace::train {

double CosineSchedule::valueAt(double t) const {
  if (t < warmupEpochs) return warmupLr + t * ((lr - warmupLr) / warmupEpochs);
  if (t >= epochs) return minLr;
  return minLr + 0.5 * (lr - minLr) * (1 + std::cos(M_PI * t / epochs));
}

}  // namespace pace::train
