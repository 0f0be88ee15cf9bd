#include "system/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define PACE_LEGACY_PROFILER 1
#else
#define PACE_LEGACY_PROFILER 0
#endif

#include <unistd.h>

#include <filesystem>
#include <set>

#include "errors.h"

namespace pace {

namespace {

namespace kineto = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;
constexpr bool kLegacyProfiler = PACE_LEGACY_PROFILER;

// Whether Kineto records here: a tiny profiled run must leave a trace with events in a scratch file.
bool kinetoRecords() {
  std::error_code error;
  const auto probe =
      std::filesystem::temp_directory_path(error) / ("pace-profiler-probe-" + std::to_string(getpid()) + ".json");
  if (error) return false;
  const ProfilerConfig config(ProfilerState::KINETO);
  const std::set<ActivityType> cpu{ActivityType::CPU};
  try {
    kineto::prepareProfiler(config, cpu);
    kineto::enableProfiler(config, cpu);
  } catch (const std::exception&) {
    return false;
  }
  try {
    at::ones({2}).add_(1);
    kineto::disableProfiler()->save(probe.string());
  } catch (const std::exception&) {
    std::filesystem::remove(probe, error);
    return false;  // the profiler was disabled, or never got far enough to record
  }
  const bool written = std::filesystem::file_size(probe, error) > 2 && !error;
  std::filesystem::remove(probe, error);
  return written;
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

}  // namespace

ProfilerKind availableProfiler() {
  static const ProfilerKind kind = kinetoRecords()   ? ProfilerKind::Kineto
                                   : kLegacyProfiler ? ProfilerKind::Legacy
                                                     : ProfilerKind::None;
  return kind;
}

const char* profilerName(ProfilerKind kind) {
  switch (kind) {
    case ProfilerKind::Kineto:
      return "kineto";
    case ProfilerKind::Legacy:
      return "legacy";
    case ProfilerKind::None:
      break;
  }
  return "none";
}

void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work) {
  const ProfilerKind kind = availableProfiler();
  if (kind == ProfilerKind::None || (cuda && kind != ProfilerKind::Kineto))
    throw UnsupportedError(std::string("libtorch ") + TORCH_VERSION + " records no profiler traces" +
                           (cuda ? " of GPU work" : "") +
                           " here (it was built without Kineto); PyTorch's own libtorch does");
  const std::string partial = path + ".partial";
  if (kind == ProfilerKind::Kineto) {
    kinetoTrace(partial, cuda, work);
  } else {
#if PACE_LEGACY_PROFILER
    try {
      // CPU operators on this thread and the autograd work it drives, written when the guard ends.
      const torch::autograd::profiler::RecordProfile recording(partial);
      work();
    } catch (...) {
      std::error_code ignored;
      std::filesystem::remove(partial, ignored);
      throw;
    }
#endif
  }
  std::filesystem::rename(partial, path);
}

}  // namespace pace
