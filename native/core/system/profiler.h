#pragma once
// Traces of training steps as torch.profiler records them: libtorch's Kineto profiler around some work, saved
// as a Chrome trace (Perfetto, chrome://tracing; bench/profile-summary.ts reads it). It records the operators
// called on this thread (and the autograd threads it drives) and, with `cuda`, the GPU's kernels, copies and
// runtime calls through CUPTI.
#include <functional>
#include <string>

namespace pace {

// Runs `work` under the profiler and writes its trace to `path` (atomically). Throws StateError when this
// libtorch records no traces (built without Kineto, as Debian's is), before running anything.
void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work);

// Whether this libtorch records profiler traces: a tiny profiled run, once per process, must leave a trace with
// events in a scratch file of the temporary folder.
bool profilerRecordsTraces();

}  // namespace pace
