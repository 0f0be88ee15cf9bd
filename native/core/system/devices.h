#pragma once
// Devices by name, as a user writes them: parsed, and checked against what this process can use.
#include <c10/core/Device.h>

#include <optional>
#include <string>

namespace pace {

// 'cpu', 'cuda', 'cuda:1': an OptionError for a name that is not a device or an index past the visible GPUs, an
// UnsupportedError for CUDA without a CUDA libtorch or GPU. Errors start with `what` and the name.
// A bare 'cuda' is the default CUDA device below: libtorch's own "current device" is per thread, and this
// process's native work runs on several.
c10::Device deviceNamed(const std::string& name, const std::string& what);

// The GPU a bare 'cuda' names from now on in this process (as torch.cuda.set_device): a data-parallel rank's own
// under NCCL; nullopt: libtorch's current device (the first GPU, unless a thread chose another).
void setDefaultCudaIndex(std::optional<c10::DeviceIndex> index);

// `device` with the default index given to a CUDA device that has none.
c10::Device withDefaultCudaIndex(const c10::Device& device);

// Waits until the work queued on `device`'s current stream has run (nothing to wait for on the CPU): a worker
// thread's result is then ready, and reading it on the JavaScript thread does not wait for the GPU there.
void waitForDevice(const c10::Device& device);

}  // namespace pace
