#pragma once
// Traces of training steps as torch.profiler records them, saved as a Chrome trace (Perfetto, chrome://tracing;
// bench/profile-summary.ts reads it): libtorch's Kineto profiler, which records the operators called on this thread
// (and the autograd threads it drives) and, with `cuda`, the GPU's kernels, copies and runtime calls through CUPTI;
// where libtorch was built without Kineto (Debian's), its legacy profiler, which records the CPU operators only.
#include <functional>
#include <string>

namespace pace {

// Runs `work` under the profiler and writes its trace to `path` (atomically). Throws UnsupportedError, before
// running anything, when this libtorch can record no trace of it (a CUDA step without Kineto), and WriteError when
// the trace cannot be written.
void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work);

}  // namespace pace
