#include "tensor/fingerprint.h"

#include <zlib.h>

#include <cstdio>
#include <vector>

#include "tensor/dtype.h"

namespace pace {

std::string contentFingerprint(const at::Tensor& tensor, bool whole) {
  constexpr int64_t kWhole = int64_t{1} << 20, kWindow = int64_t{16} << 10, kWindows = 64;
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto add = [&crc](const void* data, size_t size) { crc = crc32_z(crc, static_cast<const Bytef*>(data), size); };
  const std::string dtype = dtypeName(tensor.scalar_type());
  add(dtype.data(), dtype.size());
  for (const int64_t size : tensor.sizes()) add(&size, sizeof size);
  const int64_t total = static_cast<int64_t>(tensor.nbytes());
  if (whole || total <= kWhole) {
    const at::Tensor bytes = tensor.device().is_cpu() ? tensor.contiguous() : tensor.to(at::kCPU).contiguous();
    if (total > 0) add(bytes.data_ptr(), static_cast<size_t>(total));
  } else {
    // Only the windows leave the tensor's device (a dataset on a GPU was copied whole to the host, on the
    // JavaScript thread, to read 1 MiB of it): gathered where it lives, then one copy of 1 MiB.
    const at::Tensor flat = tensor.contiguous().view({-1}).view(at::kByte);
    std::vector<at::Tensor> windows;
    for (int64_t i = 0; i < kWindows; ++i)
      windows.push_back(flat.narrow(0, i * (total - kWindow) / (kWindows - 1), kWindow));
    const at::Tensor gathered = at::cat(windows).to(at::kCPU).contiguous();
    add(gathered.data_ptr(), static_cast<size_t>(gathered.nbytes()));
  }
  char text[24];
  std::snprintf(text, sizeof text, "crc32:%08lx", static_cast<unsigned long>(crc));
  return text;
}

}  // namespace pace
