// Stochastic depth's masks (models/forward_context.h): timm's DropPath, and PACE's renormalised SharableDropPath.
#include <ATen/CPUGeneratorImpl.h>

#include <string>

#include "check.h"
#include "models/forward_context.h"

namespace pace::tests {
namespace {

at::Tensor scaleOf(bool renormalise, int64_t copies, int64_t rows, double rate, uint64_t seed) {
  models::ForwardContext context(copies, 0, at::make_generator<at::CPUGeneratorImpl>(seed), nullptr);
  context.renormaliseDropPath = renormalise;
  if (copies > 1) context.duplicateBatch(at::zeros({rows / copies}));
  return context.dropPathScale(rows, rate, true, at::TensorOptions().dtype(at::kDouble));
}

void renormalisedMasksSumToTheBatch() {
  const double rate = 0.3;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const at::Tensor timm = scaleOf(false, 1, 64, rate, seed);
    const at::Tensor pace = scaleOf(true, 1, 64, rate, seed);
    // The same draw: the same samples kept, each kept one at 1 / (1 − rate) in timm's.
    check(timm.ne(0).equal(pace.ne(0)), "the renormalised mask keeps other samples than timm's draw");
    const int64_t kept = timm.ne(0).sum().item<int64_t>();
    check(timm.masked_select(timm.ne(0)).sub(1 / (1 - rate)).abs().max().item<double>() < 1e-15,
          "timm's kept samples are not scaled by 1 / (1 - rate)");
    // The reference's mean divides (1/keep) by k/(64·keep): every kept sample is scaled by 64/k.
    const double expected = 64.0 / static_cast<double>(kept);
    check(
        pace.masked_select(pace.ne(0)).sub(expected).abs().max().item<double>() < 1e-9,  // the 1e-12 added to the mean
        "seed " + std::to_string(seed) + ": a kept sample is not scaled by 64 / " + std::to_string(kept));
  }
}

void stackedCopiesShareTheRenormalisedMask() {
  const at::Tensor stacked = scaleOf(true, 2, 32, 0.4, 7);
  const at::Tensor single = scaleOf(true, 1, 16, 0.4, 7);
  check(stacked.size(0) == 32, "two stacked copies of 16 rows need 32 scales");
  check(stacked.slice(0, 0, 16).equal(single) && stacked.slice(0, 16).equal(single),
        "the copies' masks differ from one renormalised draw over the batch");
}

void aBatchWithNothingKeptStaysZero() {
  // rate 0.999 over 4 rows: nothing kept for this seed; the reference's + 1e-12 keeps 0 / mean finite.
  const at::Tensor scale = scaleOf(true, 1, 4, 0.999, 3);
  check(scale.eq(0).all().item<bool>(), "a batch with every sample dropped is not all zero");
}

}  // namespace

TestList dropPathTests() {
  return {
      {"PACE's drop-path masks are timm's draw renormalised to sum to the batch", renormalisedMasksSumToTheBatch},
      {"stacked PACE copies share one renormalised drop-path mask", stackedCopiesShareTheRenormalisedMask},
      {"a drop-path mask that keeps nothing stays zero when renormalised", aBatchWithNothingKeptStaysZero},
  };
}

}  // namespace pace::tests
