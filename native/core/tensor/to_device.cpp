#include "tensor/to_device.h"

namespace pace {

at::Tensor toDeviceQueued(const at::Tensor& tensor, at::Device device) {
  if (!device.is_cuda() || !tensor.device().is_cpu()) return tensor.to(device);
  at::Tensor pinned = at::empty(tensor.sizes(), tensor.options().pinned_memory(true));
  pinned.copy_(tensor);
  return pinned.to(device, /*non_blocking=*/true);
}

}  // namespace pace
