#pragma once
// Row-wise softmax and its gradient over float32 rows held in cache, AVX2 (callers check
// avx2KernelsAvailable() in tensor/cpu_small_gemm.h): attention's per-head scores, done while the head's
// products still have them in L2 instead of in a separate pass over every head's scores.
#include <cstdint>

namespace pace::kernels {

// rows[i][j] ← softmax_j(rows[i][j] + add[i][j]) for `count` rows of `length` (row stride `stride`, for both);
// `add` may be null.
void softmaxRows(float* rows, const float* add, int64_t count, int64_t length, int64_t stride);

// grad[i][j] ← p[i][j]·(grad[i][j] − Σ_k grad[i][k]·p[i][k]): the gradient of the softmax's input from that of
// its output p, in place (both with row stride `stride`).
void softmaxBackwardRows(const float* p, float* grad, int64_t count, int64_t length, int64_t stride);

}  // namespace pace::kernels
