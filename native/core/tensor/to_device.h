#pragma once
// A CPU tensor's copy on `device` that does not wait for the device. A plain `.to(cuda)` from pageable memory
// synchronises the stream: the host stops until every step queued before it has run, and the device then idles
// while the host queues the next step. Staged through pinned memory, the copy is queued on the current stream
// behind that work instead (the pinned block is kept until the copy has run). On the CPU, or for a tensor
// already on `device`, this is `.to(device)`.
#include <ATen/ATen.h>

namespace pace {

at::Tensor toDeviceQueued(const at::Tensor& tensor, at::Device device);

}  // namespace pace
