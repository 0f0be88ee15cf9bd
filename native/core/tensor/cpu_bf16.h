#pragma once
// Whether libtorch's bf16 matrix products on this CPU sum in float32, as oneDNN's and CUDA's do. Where the CPU
// lacks oneDNN's AVX-512 path, libtorch 1.13 runs them in its own loops, which sum in bf16: 8 % off at ViT-B's
// widths (and 20-200x slower than float32), so precision 'bf16' is refused on that CPU.
#include <string>

namespace pace {

// Measured once per process: 512 ones summed by a bf16 matrix product give 512 in float32, 256 in bf16.
bool cpuBf16ProductsSumInFloat();

// Throws OptionError, naming the path and what to use instead, unless cpuBf16ProductsSumInFloat().
void requireCpuBf16ProductsSumInFloat();

}  // namespace pace
