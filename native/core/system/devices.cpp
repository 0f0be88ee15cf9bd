#include "system/devices.h"

#include <torch/cuda.h>

#include <optional>

#include "errors.h"

namespace pace {

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
  return *device;
}

}  // namespace pace
