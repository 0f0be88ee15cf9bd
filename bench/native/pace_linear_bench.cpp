// Times the fused PACE linear's formulations (forward + backward) on ViT shapes: what choosePaceLinearStrategy
// is based on. Built on demand: `cmake --build build-native --target pace_linear_bench`; run from
// `npm run bench:linear`. Not part of `npm test`.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <vector>

#include "peft/pace_linear.h"
#include "system/threads.h"
#include "tensor/cpu_cache.h"

namespace {

using pace::peft::PaceLinearStrategy;

}  // namespace

int main() {
  pace::installCpuCache();
  pace::applyThreads();
  struct Shape {
    const char* name;
    int64_t rows, tokens, in, out;
  };
  const std::vector<Shape> shapes = {
      {"ViT-S qkv", 16, 197, 384, 1152}, {"ViT-S proj", 16, 197, 384, 384}, {"ViT-S fc1", 16, 197, 384, 1536},
      {"ViT-S fc2", 16, 197, 1536, 384}, {"ViT-B fc1", 16, 197, 768, 3072}, {"Swin-T window qkv", 1024, 49, 96, 288},
      {"ViT-Ti/16 fc1", 16, 197, 192, 768}, {"ViT-B/32 fc1", 16, 50, 768, 3072},
      {"rows of 8", 256, 8, 384, 1152}, {"rows of 16", 128, 16, 384, 1152}, {"rows of 32", 64, 32, 384, 1152}, {"rows of 64", 32, 64, 384, 1152}, {"rows of 96", 32, 96, 384, 1152},
      {"rows of 128", 16, 128, 384, 1152},
  };
  std::cout << "threads " << at::get_num_threads() << "\nshape                 unfused   stacked   per-row  (ms, forward+backward)\n";
  for (const Shape& s : shapes) {
    const at::Tensor x = at::randn({s.rows, s.tokens, s.in}).set_requires_grad(true);
    const at::Tensor w = at::randn({s.out, s.in}) * 0.05, b = at::randn({s.out});
    const at::Tensor delta = (at::randn({s.out, s.in}) * 0.01).set_requires_grad(true);
    const at::Tensor shift = at::randn({s.out}).set_requires_grad(true);
    const at::Tensor z = 1 + at::randn({s.rows, s.out});
    const at::Tensor grad = at::randn({s.rows, s.tokens, s.out});
    std::printf("%-20s", s.name);
    // Round-robin over the formulations, so drifting machine speed hits all of them alike; medians of 9.
    const std::vector<PaceLinearStrategy> strategies = {
        PaceLinearStrategy::Unfused, PaceLinearStrategy::StackedWeight, PaceLinearStrategy::PerRowWeight};
    std::vector<std::vector<double>> times(strategies.size());
    for (int repeat = -1; repeat < 9; ++repeat) {
      for (size_t k = 0; k < strategies.size(); ++k) {
        const auto start = std::chrono::steady_clock::now();
        const at::Tensor y = pace::peft::paceLinear(x, w, b, delta, shift, z, strategies[k]);
        torch::autograd::grad({y}, {x, delta, shift}, {grad});
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (repeat >= 0) times[k].push_back(ms);  // the first round warms up
      }
    }
    for (auto& t : times) {
      std::sort(t.begin(), t.end());
      std::printf("%10.1f", t[t.size() / 2]);
    }
    std::printf("\n");
  }
}
