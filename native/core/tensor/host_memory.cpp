#include "tensor/host_memory.h"

#include <cstdint>
#include <cstdlib>
#include <new>

namespace pace {

namespace {
constexpr uintptr_t kAlignment = 64;  // what libtorch's allocator guarantees, for vectorised kernels
}

at::Tensor emptyHostTensor(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  size_t bytes = c10::elementSize(dtype);
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(bytes, static_cast<size_t>(dim), &bytes)) throw std::bad_alloc();
  }
  if (bytes > SIZE_MAX - kAlignment) throw std::bad_alloc();
  void* raw = std::malloc(bytes + kAlignment);
  if (!raw) throw std::bad_alloc();
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kAlignment - 1) & ~(kAlignment - 1));
  const auto release = [raw](void*) { std::free(raw); };
  return at::from_blob(aligned, shape, release, at::TensorOptions().dtype(dtype));
}

}  // namespace pace
