#pragma once
// The CUDA caching allocator's counters for one device, as torch.cuda.memory_allocated / max_memory_allocated /
// memory_reserved report them (nothing without a CUDA build).
#include <cstdint>
#include <optional>

namespace pace {

struct CudaMemory {
  int64_t allocatedBytes = 0;
  int64_t peakAllocatedBytes = 0;  // since the process started or the last reset
  int64_t reservedBytes = 0;
};

// The device's counters; with `resetPeak`, the peak restarts from what is allocated now (after reading it).
// Nothing when this build has no CUDA or `device` is not a visible GPU.
std::optional<CudaMemory> cudaMemory(int device, bool resetPeak);

}  // namespace pace
