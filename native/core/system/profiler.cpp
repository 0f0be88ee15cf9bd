#include "system/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define PACE_LEGACY_PROFILER 1
#else
#define PACE_LEGACY_PROFILER 0
#endif

#include <filesystem>
#include <fstream>
#include <set>

#include "errors.h"

namespace pace {

namespace {

namespace kineto = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// Whether Kineto records here: a tiny profiled run must leave a trace with events in `probe` (beside the trace
// asked for, so a folder it can write). Decided once per process.
bool kinetoRecords(const std::string& probe) {
  static const bool recorded = [&] {
    const ProfilerConfig config(ProfilerState::KINETO);
    const std::set<ActivityType> cpu{ActivityType::CPU};
    try {
      kineto::prepareProfiler(config, cpu);
      kineto::enableProfiler(config, cpu);
    } catch (const std::exception&) {
      return false;
    }
    std::error_code error;
    try {
      at::ones({2}).add_(1);
      kineto::disableProfiler()->save(probe);
    } catch (const std::exception&) {
      std::filesystem::remove(probe, error);
      return false;  // the profiler was disabled, or never got far enough to record
    }
    const bool written = std::filesystem::file_size(probe, error) > 2 && !error;
    std::filesystem::remove(probe, error);
    return written;
  }();
  return recorded;
}

void kinetoTrace(const std::string& partial, bool cuda, const std::function<void()>& work) {
  const ProfilerConfig config(ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  kineto::prepareProfiler(config, activities);
  kineto::enableProfiler(config, activities);
  try {
    work();
  } catch (...) {
    kineto::disableProfiler();
    throw;
  }
  kineto::disableProfiler()->save(partial);
}

#if PACE_LEGACY_PROFILER
// The legacy profiler's trace of `work`. RecordProfile only logs a failed write, so the stream is ours and checked:
// an unwritable file is refused before the work runs, a short write after it.
void legacyTrace(const std::string& partial, const std::function<void()>& work) {
  std::ofstream out(partial);
  if (!out) throw WriteError("cannot write the profiler trace '" + partial + "'");
  try {
    const torch::autograd::profiler::RecordProfile recording(out);  // the trace is written as it ends
    work();
  } catch (...) {
    out.close();
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    throw;
  }
  out.close();
  if (!out) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    throw WriteError("could not write the whole profiler trace '" + partial + "' (is the disk full?)");
  }
}
#endif

}  // namespace

void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work) {
  // Refused before any step, and before the probe: an unwritable folder would otherwise be decided as a libtorch
  // without Kineto, for the rest of the process.
  const std::string probe = path + ".probe";
  if (!std::ofstream(probe)) throw WriteError("cannot write the profiler trace '" + path + "'");
  std::error_code ignored;
  std::filesystem::remove(probe, ignored);
  const bool kineto = kinetoRecords(probe);
  if (!kineto && (cuda || !PACE_LEGACY_PROFILER))
    throw UnsupportedError(std::string("libtorch ") + TORCH_VERSION + " records no profiler traces" +
                           (cuda ? " of GPU work" : "") +
                           " here (it was built without Kineto); PyTorch's own libtorch does");
  const std::string partial = path + ".partial";
  if (kineto) {
    kinetoTrace(partial, cuda, work);
  } else {
#if PACE_LEGACY_PROFILER
    legacyTrace(partial, work);
#endif
  }
  std::filesystem::rename(partial, path);
}

}  // namespace pace
