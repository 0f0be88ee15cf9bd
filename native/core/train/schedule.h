#pragma once
#include <cstdint>

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
  // The rate of epoch `epoch` (0-based) when stepped once per epoch as the reference loop does
  // (`scheduler.step(e)` after epoch e): epoch e runs at f(e − 1), epoch 0 at the warm-up start (the peak without
  // a warm-up).
  double forEpoch(int64_t epoch) const;
  // Per-step stepping (timm with t_in_epochs = false, as create_scheduler_v2 makes it): f at step / stepsPerEpoch
  // epochs, computed as timm computes it, in updates.
  double forStep(int64_t step, int64_t stepsPerEpoch) const;
  void validate() const;  // throws OptionError naming the field
};

}  // namespace pace::train
