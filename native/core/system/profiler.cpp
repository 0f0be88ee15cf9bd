#include "system/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>

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

}  // namespace

bool profilerRecordsTraces() {
  static const bool recorded = [] {
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
  }();
  return recorded;
}

void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work) {
  if (!profilerRecordsTraces())
    throw UnsupportedError(
        std::string("libtorch ") + TORCH_VERSION +
        " records no profiler traces here (it was built without Kineto); PyTorch's own libtorch does");
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
  const auto result = kineto::disableProfiler();
  const std::string partial = path + ".partial";
  result->save(partial);
  std::filesystem::rename(partial, path);
}

}  // namespace pace
