#include "system/cuda_memory.h"

#include <torch/cuda.h>

#ifdef PACE_WITH_CUDA_KERNELS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace pace {

std::optional<CudaMemory> cudaMemory(int device, bool resetPeak) {
#ifdef PACE_WITH_CUDA_KERNELS
  if (device < 0 || device >= static_cast<int>(torch::cuda::device_count())) return std::nullopt;
  const auto index = static_cast<c10::DeviceIndex>(device);
  CudaMemory memory;
  // Before the process's first CUDA tensor the allocator has no devices (asking it fails with "Invalid device
  // argument"); nothing is allocated then, and reading must not create a CUDA context.
  if (!c10::cuda::CUDACachingAllocator::get()->initialized()) return memory;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  constexpr size_t kAggregate = 0;  // StatType::AGGREGATE (its namespace moved between releases)
  memory.allocatedBytes = stats.allocated_bytes[kAggregate].current;
  memory.peakAllocatedBytes = stats.allocated_bytes[kAggregate].peak;
  memory.reservedBytes = stats.reserved_bytes[kAggregate].current;
  if (resetPeak) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
  return memory;
#else
  (void)device;
  (void)resetPeak;
  return std::nullopt;
#endif
}

void releaseCudaCache() {
#ifdef PACE_WITH_CUDA_KERNELS
  // Before the first CUDA tensor there is nothing cached, and asking must not create a CUDA context.
  if (c10::cuda::CUDACachingAllocator::get()->initialized()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace pace
