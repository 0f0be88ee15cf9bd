#include "cpu/small_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <stdexcept>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PACE_SMALL_GEMM_AVX2 1
#include <immintrin.h>
#endif

namespace pace::kernels {

namespace {

constexpr int64_t kTileRows = 6;
constexpr int64_t kTileCols = 16;

#ifdef PACE_SMALL_GEMM_AVX2
// out[t·16 + c] = in[c·ld + t] for an 8 × 8 block: one column-major block of B into a packed panel.
__attribute__((target("avx2,fma"))) void transpose8x8(const float* in, int64_t ld, float* out) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(out + i * kTileCols, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(out + (i + 4) * kTileCols, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// out[p·16 + c] = B[p][j0 + c], zero past the last column.
void packColumns(const StridedMatrix& b, int64_t j0, int64_t cols, int64_t k, float* out) {
  if (b.colStride == 1 && cols == kTileCols) {
    for (int64_t p = 0; p < k; ++p)
      std::memcpy(out + p * kTileCols, b.data + p * b.rowStride + j0, sizeof(float) * kTileCols);
    return;
  }
  int64_t c = 0, vectorDepth = 0;
#ifdef PACE_SMALL_GEMM_AVX2
  if (b.rowStride == 1) {  // B's columns contiguous (B = Xᵀ): 8 × 8 blocks transposed in registers
    vectorDepth = k - k % 8;
    for (; c + 8 <= cols; c += 8)
      for (int64_t p = 0; p < vectorDepth; p += 8)
        transpose8x8(b.data + (j0 + c) * b.colStride + p, b.colStride, out + p * kTileCols + c);
  }
#endif
  for (int64_t column = 0; column < kTileCols; ++column) {
    const int64_t from = column < c ? vectorDepth : 0;  // the part the blocks above did not cover
    if (column >= cols) {
      for (int64_t p = from; p < k; ++p) out[p * kTileCols + column] = 0.f;
      continue;
    }
    const float* source = b.data + (j0 + column) * b.colStride;
    for (int64_t p = from; p < k; ++p) out[p * kTileCols + column] = source[p * b.rowStride];
  }
}

#ifdef PACE_SMALL_GEMM_AVX2
// low += a·left, high += a·right: one row of a tile at one step along k.
__attribute__((target("avx2,fma"), always_inline)) inline void accumulateRow(const float* a, __m256 left, __m256 right,
                                                                             __m256& low, __m256& high) {
  const __m256 broadcast = _mm256_broadcast_ss(a);
  low = _mm256_fmadd_ps(broadcast, left, low);
  high = _mm256_fmadd_ps(broadcast, right, high);
}

// One 6 × 16 tile of C over the whole depth k: A's six rows read in place (row i at a + i·rs, step cs along
// k; rows past `rows` repeat the last one and are not stored), B from its packed panel. The twelve
// accumulators are named one by one: as an array GCC kept them in memory. A is not packed: the operands are
// already in cache (both measured in bench/RESULTS.md).
__attribute__((target("avx2,fma"))) void tile(int64_t k, const float* a, int64_t rs, int64_t cs, const float* pb,
                                              float alpha, float* c, int64_t ldc, int64_t rows, int64_t cols) {
  const float* a0 = a;
  const float* a1 = a + std::min<int64_t>(1, rows - 1) * rs;
  const float* a2 = a + std::min<int64_t>(2, rows - 1) * rs;
  const float* a3 = a + std::min<int64_t>(3, rows - 1) * rs;
  const float* a4 = a + std::min<int64_t>(4, rows - 1) * rs;
  const float* a5 = a + std::min<int64_t>(5, rows - 1) * rs;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t p = 0, offset = 0; p < k; ++p, offset += cs, pb += kTileCols) {
    const __m256 left = _mm256_loadu_ps(pb), right = _mm256_loadu_ps(pb + 8);
    accumulateRow(a0 + offset, left, right, c00, c01);
    accumulateRow(a1 + offset, left, right, c10, c11);
    accumulateRow(a2 + offset, left, right, c20, c21);
    accumulateRow(a3 + offset, left, right, c30, c31);
    accumulateRow(a4 + offset, left, right, c40, c41);
    accumulateRow(a5 + offset, left, right, c50, c51);
  }
  const __m256 scale = _mm256_set1_ps(alpha);
  const __m256 results[kTileRows][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (rows == kTileRows && cols == kTileCols) {
    for (int64_t r = 0; r < kTileRows; ++r) {
      _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(results[r][0], scale));
      _mm256_storeu_ps(c + r * ldc + 8, _mm256_mul_ps(results[r][1], scale));
    }
    return;
  }
  alignas(32) float edge[kTileRows][kTileCols];
  for (int64_t r = 0; r < kTileRows; ++r) {
    _mm256_store_ps(edge[r], _mm256_mul_ps(results[r][0], scale));
    _mm256_store_ps(edge[r] + 8, _mm256_mul_ps(results[r][1], scale));
  }
  for (int64_t r = 0; r < rows; ++r) std::memcpy(c + r * ldc, edge[r], sizeof(float) * cols);
}
#endif

}  // namespace

bool avx2KernelsAvailable() {
#ifdef PACE_SMALL_GEMM_AVX2
  static const bool available = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return available;
#else
  return false;
#endif
}

void smallGemm(int64_t m, int64_t n, int64_t k, StridedMatrix a, StridedMatrix b, float alpha, float* c, int64_t ldc) {
#ifdef PACE_SMALL_GEMM_AVX2
  if (!avx2KernelsAvailable()) throw std::logic_error("smallGemm: this CPU lacks AVX2/FMA");
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.f);
    return;
  }
  // Per thread, reused: B packed whole (k × n rounded up, ≈ 50 KB at attention sizes).
  thread_local std::vector<float> packedB;
  const int64_t panels = (n + kTileCols - 1) / kTileCols;
  if (static_cast<int64_t>(packedB.size()) < panels * k * kTileCols)
    packedB.resize(static_cast<size_t>(panels * k * kTileCols));
  for (int64_t panel = 0; panel < panels; ++panel) {
    const int64_t j0 = panel * kTileCols;
    packColumns(b, j0, std::min(kTileCols, n - j0), k, packedB.data() + panel * k * kTileCols);
  }
  for (int64_t i0 = 0; i0 < m; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, m - i0);
    for (int64_t panel = 0; panel < panels; ++panel) {
      const int64_t j0 = panel * kTileCols;
      tile(k, a.data + i0 * a.rowStride, a.rowStride, a.colStride, packedB.data() + panel * k * kTileCols, alpha,
           c + i0 * ldc + j0, ldc, rows, std::min(kTileCols, n - j0));
    }
  }
#else
  (void)m, (void)n, (void)k, (void)a, (void)b, (void)alpha, (void)c, (void)ldc;
  throw std::logic_error("smallGemm: built without the x86-64 AVX2 kernel");
#endif
}

}  // namespace pace::kernels
