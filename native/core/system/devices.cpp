#include "system/devices.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include <atomic>
#include <optional>

#include "errors.h"

namespace pace {

namespace {

std::atomic<int> defaultCudaIndex{-1};  // -1: none set

}  // namespace

void setDefaultCudaIndex(std::optional<c10::DeviceIndex> index) { defaultCudaIndex = index.value_or(-1); }

c10::Device withDefaultCudaIndex(const c10::Device& device) {
  const int index = defaultCudaIndex;
  if (!device.is_cuda() || device.has_index() || index < 0) return device;
  return {c10::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

void waitForDevice(const c10::Device& device) {
  if (!device.is_cuda()) return;
  c10::impl::getDeviceGuardImpl(device.type())->getStream(device).synchronize();
}

c10::Device deviceNamed(const std::string& name, const std::string& what) {
  const std::string named = what + " '" + name + "'";
  std::optional<c10::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error&) {
    throw OptionError(named + " is not a device: expected 'cpu', 'cuda' or 'cuda:<index>'");
  }
  if (device->is_cpu()) return *device;
  if (!device->is_cuda()) throw UnsupportedError(named + ": only cpu and cuda are supported");
  const auto visible = static_cast<int64_t>(torch::cuda::device_count());
  if (visible == 0)
    throw UnsupportedError(named + ": no CUDA device here (this libtorch has no CUDA, or no GPU is visible)");
  if (device->has_index() && device->index() >= visible)
    throw OptionError(named + ": only " + std::to_string(visible) + " CUDA device(s) are visible");
  return withDefaultCudaIndex(*device);
}

}  // namespace pace
