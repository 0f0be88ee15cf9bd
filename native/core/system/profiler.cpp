#include "system/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>

#include <filesystem>
#include <set>

#include "errors.h"

namespace pace {

namespace {

namespace kineto = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// Whether this libtorch writes traces: a tiny profiled run must leave a file with events in it.
bool tracesRecorded(const std::string& probe) {
  static const bool recorded = [&] {
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
      kineto::disableProfiler()->save(probe);
    } catch (const std::exception&) {
      return false;  // the profiler was disabled, or never got far enough to record
    }
    std::error_code error;
    const bool written = std::filesystem::file_size(probe, error) > 2 && !error;
    std::filesystem::remove(probe, error);
    return written;
  }();
  return recorded;
}

}  // namespace

void profileToTrace(const std::string& path, bool cuda, const std::function<void()>& work) {
  if (!tracesRecorded(path + ".probe"))
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
