#pragma once
// Traces of training steps as torch.profiler records them: libtorch's Kineto profiler around some work, saved
// as a Chrome trace (Perfetto, chrome://tracing; bench/profile-summary.ts reads it). It records the operators
// called on this thread (and the autograd threads it drives) and, with `cuda`, the GPU's kernels, copies and
// runtime calls through CUPTI.
#include <functional>
#include <string>

namespace pace {

// Which profiler this libtorch offers: Kineto (operators and, on a GPU, kernels, copies and runtime calls: PyTorch's
// libtorch), the legacy one (CPU operators only: a libtorch built without Kineto, as Debian's), or none.
enum class ProfilerKind { Kineto, Legacy, None };
ProfilerKind availableProfiler();
const char* profilerName(ProfilerKind kind);

// Runs `work` under the profiler and writes its trace to `path` (atomically). Throws UnsupportedError, before
// running anything, when this libtorch can record no trace of it (no profiler, or a CUDA step without Kineto).
void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work);

}  // namespace pace
