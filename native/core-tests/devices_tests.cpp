// Devices by name (system/devices.h): a bare 'cuda' takes the process's default GPU once one is set (a NCCL
// rank's own), on whatever thread names it; an explicit index and the CPU are left as they are. And a dataset's
// copy on the GPU (train/device_dataset.h).
#include <cstring>

#include "check.h"
#include "system/devices.h"
#include "train/device_dataset.h"

namespace pace::tests {
namespace {

void aBareCudaTakesTheDefaultIndex() {
  const c10::Device bare(c10::kCUDA), second(c10::kCUDA, 1), cpu(c10::kCPU);
  check(withDefaultCudaIndex(bare) == bare, "'cuda' gained an index before any default was set");
  setDefaultCudaIndex(3);
  const bool took = withDefaultCudaIndex(bare) == c10::Device(c10::kCUDA, 3);
  const bool keptIndex = withDefaultCudaIndex(second) == second;
  const bool keptCpu = withDefaultCudaIndex(cpu) == cpu;
  setDefaultCudaIndex(std::nullopt);
  check(took, "'cuda' did not become cuda:3 with the default set to 3");
  check(keptIndex, "'cuda:1' did not stay cuda:1 with a default set");
  check(keptCpu, "'cpu' changed with a default CUDA index set");
  check(withDefaultCudaIndex(bare) == bare, "'cuda' kept the default after it was cleared");
}

// Pixels written in place where libtorch does not see it (through a JavaScript view, between two fits) reach the
// device once the copy is dropped, as a fit's first epoch does.
void aDeviceDatasetIsCopiedAgainOnceForgotten() {
  skipUnless(at::hasCUDA(), "no CUDA device visible");
  const at::Device cuda(at::kCUDA);
  const at::Tensor images = at::zeros({4, 2, 2, 3}, at::kByte);
  train::DeviceDataset dataset;
  check(dataset.on(images, cuda).device().is_cuda(), "the dataset was not copied to the GPU");
  std::memset(images.data_ptr(), 1, images.nbytes());  // no version bump, as a write through a view
  check(dataset.on(images, cuda).sum().item<int64_t>() == 0, "the copy was not reused while unchanged to libtorch");
  dataset.forget();
  check(dataset.on(images, cuda).sum().item<int64_t>() == 48, "the pixels written in place did not reach the GPU");
}

}  // namespace

TestList devicesTests() {
  return {{"a bare 'cuda' names the default GPU once one is set", aBareCudaTakesTheDefaultIndex},
          {"a dataset's GPU copy is redone once forgotten", aDeviceDatasetIsCopiedAgainOnceForgotten}};
}

}  // namespace pace::tests
