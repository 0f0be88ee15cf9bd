#pragma once
// What the core test suites share: a failing check throws, main() (core_tests.cpp) counts and reports.
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pace::tests {

struct Failure {
  std::string message;
};

// Thrown by a test that cannot run here (no GPU, no AVX2): reported as skipped with the reason, never as passed.
struct Skip {
  std::string reason;
};

inline void check(bool condition, const std::string& message) {
  if (!condition) throw Failure{message};
}

inline void skipUnless(bool condition, const std::string& reason) {
  if (!condition) throw Skip{reason};
}

// max |actual − expected| / max |expected| (the absolute error when expected is all zero), in float64.
inline double relativeError(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  const double error = (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
  return scale == 0 ? error : error / scale;
}

// Why bf16 tests on the CPU skip where cpuBf16ProductsSumInFloat() is false (tensor/cpu_bf16.h).
inline constexpr const char* kCpuBf16SumsInBf16 =
    "libtorch sums bf16 matrix products in bf16 on this CPU, so precision 'bf16' is refused here";

using TestList = std::vector<std::pair<const char*, std::function<void()>>>;

TestList paceLinearTests();            // pace_linear_tests.cpp
TestList paceLinearCudaTests();        // pace_linear_tests.cpp: skipped without a visible GPU
TestList paceEpilogueTests();          // pace_epilogue_tests.cpp
TestList paceEpilogueCudaTests();      // pace_epilogue_tests.cpp: skipped without a visible GPU
TestList layerNormTests();             // layer_norm_tests.cpp
TestList layerNormCudaTests();         // layer_norm_tests.cpp: skipped without a visible GPU
TestList cpuAttentionTests();          // attention_tests.cpp
TestList fusedAdamWTests();            // adamw_tests.cpp: each skipped where libtorch has no fused kernel there
TestList augmentTests();               // augment_tests.cpp
TestList dropPathTests();              // drop_path_tests.cpp
TestList profilerTests();              // profiler_tests.cpp: skipped where libtorch records no traces
TestList checkpointResamplingTests();  // checkpoint_resampling_tests.cpp
TestList precisionTests();             // precision_tests.cpp
TestList devicesTests();               // devices_tests.cpp
TestList windowOrderTests();           // window_order_tests.cpp
TestList stepGraphsTests();            // step_graphs_tests.cpp
TestList backendChoiceTests();         // backend_choice_tests.cpp

}  // namespace pace::tests
