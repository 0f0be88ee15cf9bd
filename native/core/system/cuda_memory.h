#pragma once
// The CUDA caching allocator's counters for one device, as torch.cuda.memory_allocated / max_memory_allocated /
// memory_reserved report them, and its release of unused blocks (nothing without a CUDA build).
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

// Returns the caching allocator's unused blocks on every GPU to the driver (torch.cuda.empty_cache()), so that
// another process can have them; tensors in use and captured graphs' pools keep theirs. Nothing without CUDA.
// Call it through train::unlessGraphsBusy: some libtorch releases assert in it while any thread captures a graph.
void releaseCudaCache();

}  // namespace pace
