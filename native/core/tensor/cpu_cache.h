#pragma once
// libtorch's CPU allocator replaced by one that keeps freed large blocks for reuse.
//
// A training step allocates and frees the same large activations every step. glibc returns such blocks to
// the kernel (they are mmapped, or trimmed from the heaps of the worker threads our Promises run on), so each
// step faults every page in again: on a ViT-S PACE step that was 4–5 s of kernel time per step, more than
// the GEMMs. (Python avoids most of it by accident: its main thread's heap keeps memory.) Blocks of at least
// 1 MiB are cached by size, up to a quarter of physical memory; smaller ones go straight to malloc/free.
#include <cstddef>
#include <cstdint>

namespace pace {

// Installs the allocator for every CPU tensor libtorch creates from now on (idempotent). PACE_CPU_CACHE=0
// in the environment leaves libtorch's own allocator in place.
void installCpuCache();

struct CpuCacheStats {
  bool installed = false;
  uint64_t cachedBytes = 0;  // freed blocks held for reuse
  uint64_t cachedBlocks = 0;
  uint64_t hits = 0;    // large allocations served from the cache
  uint64_t misses = 0;  // large allocations that went to malloc
  uint64_t limitBytes = 0;
};
CpuCacheStats cpuCacheStats();

// Returns every cached block to the system (tensors in use are not affected).
void releaseCpuCache();

}  // namespace pace
