#include "train/device_dataset.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace pace::train {

namespace {
constexpr int64_t kMaxDatasetBytesOnDevice = int64_t{4} << 30;

// A bare "cuda" as the GPU it means now (the current one): the copy's device always has its index.
c10::Device indexed(const c10::Device& device) {
  if (device.has_index() || device.is_cpu()) return device;
  return c10::impl::getDeviceGuardImpl(device.type())->getDevice();
}
}  // namespace

at::Tensor DeviceDataset::on(const at::Tensor& images, const c10::Device& asked) {
  const c10::Device device = indexed(asked);
  if (images.device() == device || !images.device().is_cpu() ||
      images.numel() * static_cast<int64_t>(images.element_size()) > kMaxDatasetBytesOnDevice)
    return images;
  if (!source_.is_same(images) || version_ != images._version() || onDevice_.device() != device) {
    onDevice_ = images.to(device);
    source_ = images;
    version_ = images._version();
  }
  return onDevice_;
}

void DeviceDataset::forget() {
  source_ = at::Tensor();
  onDevice_ = at::Tensor();
  version_ = -1;
}

}  // namespace pace::train
