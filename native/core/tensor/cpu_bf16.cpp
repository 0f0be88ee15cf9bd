#include "tensor/cpu_bf16.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include "errors.h"
#include "tensor/precision.h"

namespace pace {

bool cpuBf16ProductsSumInFloat() {
  static const bool inFloat = [] {
    const AutocastOff plain(c10::DeviceType::CPU);
    // A matrix product (a single row would take libtorch's dot path, which sums in float32 anyway). Past 256 a
    // bf16 sum stops growing: 256 + 1 rounds back to 256 (bf16 keeps 8 significant bits).
    const at::Tensor ones = at::ones({4, 512}, at::TensorOptions().dtype(at::kBFloat16));
    return ones.mm(ones.t().contiguous()).min().item<float>() == 512.0F;
  }();
  return inFloat;
}

void requireCpuBf16ProductsSumInFloat() {
  if (cpuBf16ProductsSumInFloat()) return;
  throw OptionError(std::string("precision 'bf16' on this CPU: libtorch ") + TORCH_VERSION +
                    " sums bf16 matrix products in bf16 here (its own loops; oneDNN's path needs AVX-512 BW/VL/DQ),"
                    " up to 8 % off at ViT-B's widths and many times slower than float32; use precision 'fp32'"
                    " (pace doctor shows the CPU's bf16 path)");
}

}  // namespace pace
