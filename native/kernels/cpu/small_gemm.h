#pragma once
// A single-threaded float32 GEMM for matrices that fit in cache, on any strides: the per-head products of
// attention (197 × 197 × 64 at ViT sizes), run one head per thread.
//
// Why not the BLAS: OpenBLAS multithreads each of these small products, far below its rate at these shapes,
// and calling it from inside our own parallel region made every later GEMM of the step slower
// (bench/RESULTS.md). This one packs both operands into panels and runs a 6 × 16 AVX2/FMA register tile.
#include <cstdint>

namespace pace::kernels {

struct StridedMatrix {
  const float* data;
  int64_t rowStride;
  int64_t colStride;
};

// x86-64 with AVX2 and FMA, checked at run time; callers fall back to ATen without it.
bool avx2KernelsAvailable();

// C[m × n] = alpha · A[m × k] · B[k × n], C with row stride `ldc` and unit column stride. Needs
// avx2KernelsAvailable(); not thread-safe across calls sharing C, safe from several threads otherwise.
void smallGemm(int64_t m, int64_t n, int64_t k, StridedMatrix a, StridedMatrix b, float alpha, float* c, int64_t ldc);

}  // namespace pace::kernels
