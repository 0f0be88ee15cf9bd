// Swin's shifted windows as gathers (models/window_order.h) against the roll-and-partition they replace.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <string>
#include <tuple>
#include <vector>

#include "check.h"
#include "models/window_order.h"

namespace pace::tests {
namespace {

// timm's way: roll toward the origin, then [B, H, W, C] -> [B·windows, w², C].
at::Tensor rolledWindows(const at::Tensor& x, int64_t window, int64_t shift) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  return at::roll(x, {-shift, -shift}, {1, 2})
      .view({b, h / window, window, w / window, window, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({-1, window * window, c});
}

at::Tensor mergedAndRolledBack(const at::Tensor& windows, int64_t b, int64_t h, int64_t w, int64_t window,
                               int64_t shift) {
  const int64_t c = windows.size(-1);
  const at::Tensor merged =
      windows.view({b, h / window, w / window, window, window, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b, h, w, c});
  return at::roll(merged, {shift, shift}, {1, 2});
}

void gathersEqualRollAndPartition() {
  const int64_t b = 3, c = 5, window = 4;
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> maps = {{8, 8, 2}, {12, 8, 2}, {8, 16, 3}};
  for (const auto& [h, w, shift] : maps) {
    const std::string where = std::to_string(h) + "x" + std::to_string(w) + " shift " + std::to_string(shift);
    const at::Tensor order = models::shiftedWindowOrder(h, w, window, shift);
    const at::Tensor inverse = models::inversePermutation(order);
    check(order.index_select(0, inverse).equal(at::arange(h * w, order.options())),
          where + ": the inverse does not undo the order");

    const at::Tensor source = at::randn({b, h, w, c}, at::kDouble);
    const at::Tensor upstream = at::randn({b * h * w / (window * window), window * window, c}, at::kDouble);
    const at::Tensor back = at::randn({b, h, w, c}, at::kDouble);

    const at::Tensor x1 = source.clone().requires_grad_(true);
    const at::Tensor expected = rolledWindows(x1, window, shift);
    const at::Tensor x2 = source.clone().requires_grad_(true);
    const at::Tensor windows =
        models::permuteTokens(x2.reshape({b, h * w, c}), order, inverse).view({-1, window * window, c});
    check(windows.equal(expected), where + ": the gathered windows differ from roll and partition");

    // Through a step that mixes tokens within a window, then back: the same values, the same gradient.
    const at::Tensor mixed1 = expected * upstream + expected.flip(1);
    const at::Tensor mixed2 = windows * upstream + windows.flip(1);
    const at::Tensor out1 = mergedAndRolledBack(mixed1, b, h, w, window, shift);
    const at::Tensor out2 = models::permuteTokens(mixed2.reshape({b, h * w, c}), inverse, order).view({b, h, w, c});
    check(out2.equal(out1), where + ": the merged map differs from merge and roll back");
    (out1 * back).sum().backward();
    (out2 * back).sum().backward();
    check(x2.grad().equal(x1.grad()), where + ": the gradient differs from roll and partition's");
  }
}

void aMapNotDividingIntoWindowsIsRefused() {
  bool refused = false;
  try {
    models::shiftedWindowOrder(10, 8, 4, 2);
  } catch (const c10::Error& error) {
    refused =
        std::string(error.what_without_backtrace()).find("10x8 map does not divide into 4x4") != std::string::npos;
  }
  check(refused, "a 10x8 map in 4x4 windows was not refused by name");
}

}  // namespace

TestList windowOrderTests() {
  return {
      {"Swin's shifted windows gathered in one step equal roll and partition, values and gradients",
       gathersEqualRollAndPartition},
      {"a map that does not divide into windows is refused", aMapNotDividingIntoWindowsIsRefused},
  };
}

}  // namespace pace::tests
