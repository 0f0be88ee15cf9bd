#pragma once

namespace pace::train {

struct CosineSchedule {
  double lr = 1e-3;
  double epochs = 100;  // t_initial
  double warmupEpochs = 10;
  double minLr = 1e-5;
  double warmupLr = 1e-6;

  // timm's CosineLRScheduler f(t) (cycle_limit 1, k_decay 1, no warm-up prefix), with the same operations in
  // the same order and the C library's cos (which Python's math.cos calls), so it matches timm to the bit.
  double valueAt(double t) const;
};

}  // namespace pace::train
