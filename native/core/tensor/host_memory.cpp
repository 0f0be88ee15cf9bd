#include "tensor/host_memory.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "errors.h"
#include "tensor/dtype.h"

namespace pace {

namespace {
constexpr uintptr_t kAlignment = 64;  // what libtorch's allocator guarantees, for vectorised kernels
}

std::string outOfHostMemory(size_t bytes) {
  char size[32];
  std::snprintf(size, sizeof size, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return "out of host memory: " + std::string(size) + " (" + std::to_string(bytes) + " bytes) could not be allocated";
}

at::Tensor emptyHostTensor(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  for (const int64_t size : shape)
    if (size < 0) throw ShapeError("a tensor of shape " + shapeToString(shape) + " cannot be made");
  const std::optional<uint64_t> total = byteSizeOf(shape, dtype);
  if (!total || *total > SIZE_MAX - kAlignment)
    throw UnsupportedError("out of host memory: a tensor of shape " + shapeToString(shape) + " needs more than " +
                           "2^64 bytes");
  const size_t bytes = *total;
  void* raw = std::malloc(bytes + kAlignment);
  if (!raw) throw UnsupportedError(outOfHostMemory(bytes));
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kAlignment - 1) & ~(kAlignment - 1));
  const auto release = [raw](void*) { std::free(raw); };
  return at::from_blob(aligned, shape, release, at::TensorOptions().dtype(dtype));
}

}  // namespace pace
