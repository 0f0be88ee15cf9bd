#pragma once
#include <ATen/ATen.h>

#include <cstddef>
#include <string>
#include <vector>

namespace pace {

// An uninitialised CPU tensor whose memory comes from plain malloc, 64-byte aligned by hand.
// libtorch's own CPU allocator uses posix_memalign, which glibc serves by carving a slightly larger
// block and returning the slivers to its free lists. When tensors are created and freed in a tight
// loop while other small allocations stay alive (as the handles of JavaScript objects do until their
// finalizers run), those slivers pin the freed blocks and resident memory grows by hundreds of MiB.
// A plain malloc of the same size reuses the freed block exactly. Used for tensors the core creates
// from outside data (JavaScript arrays, files).
at::Tensor emptyHostTensor(const std::vector<int64_t>& shape, at::ScalarType dtype);

// "out of host memory: 1.2 GiB (1288490188 bytes) could not be allocated", the message of every host allocation
// that fails (an UnsupportedError: a limit of the machine, not a bug).
std::string outOfHostMemory(size_t bytes);

}  // namespace pace
