#include "cpu/softmax_rows.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <stdexcept>
#include "cpu/small_gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PACE_SOFTMAX_AVX2 1
#include <immintrin.h>
#endif

namespace pace::kernels {

#ifdef PACE_SOFTMAX_AVX2
namespace {

constexpr int64_t kLanes = 8;

// e^x for x ≤ 0 (Cephes' expf: 2^n · e^r with |r| ≤ ln2/2, a degree-5 polynomial; ≈ 1 ulp). Below −87.3 it
// returns 0 rather than a denormal, as masked scores (−100) should give.
__attribute__((target("avx2,fma"))) __m256 expNonPositive(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.3f);
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lowest);
  const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(y, _mm256_castsi256_ps(exponent)));
}

__attribute__((target("avx2,fma"))) float horizontalSum(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
}

__attribute__((target("avx2,fma"))) float horizontalMax(__m256 v) {
  const __m128 half = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quarter = _mm_max_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_max_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
}

__attribute__((target("avx2,fma"))) void softmaxRow(float* row, const float* add, int64_t length) {
  const int64_t vectorEnd = length - length % kLanes;
  if (add) {
    for (int64_t j = 0; j < vectorEnd; j += kLanes)
      _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(add + j)));
    for (int64_t j = vectorEnd; j < length; ++j) row[j] += add[j];
  }
  __m256 maxima = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < vectorEnd; j += kLanes) maxima = _mm256_max_ps(maxima, _mm256_loadu_ps(row + j));
  float maximum = horizontalMax(maxima);
  for (int64_t j = vectorEnd; j < length; ++j) maximum = std::max(maximum, row[j]);
  const __m256 shift = _mm256_set1_ps(maximum);
  __m256 sums = _mm256_setzero_ps();
  for (int64_t j = 0; j < vectorEnd; j += kLanes) {
    const __m256 e = expNonPositive(_mm256_sub_ps(_mm256_loadu_ps(row + j), shift));
    _mm256_storeu_ps(row + j, e);
    sums = _mm256_add_ps(sums, e);
  }
  float sum = horizontalSum(sums);
  for (int64_t j = vectorEnd; j < length; ++j) sum += (row[j] = std::exp(row[j] - maximum));
  const __m256 inverse = _mm256_set1_ps(1.f / sum);
  for (int64_t j = 0; j < vectorEnd; j += kLanes)
    _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inverse));
  for (int64_t j = vectorEnd; j < length; ++j) row[j] /= sum;
}

__attribute__((target("avx2,fma"))) void softmaxBackwardRow(const float* p, float* grad, int64_t length) {
  const int64_t vectorEnd = length - length % kLanes;
  __m256 dots = _mm256_setzero_ps();
  for (int64_t j = 0; j < vectorEnd; j += kLanes)
    dots = _mm256_fmadd_ps(_mm256_loadu_ps(grad + j), _mm256_loadu_ps(p + j), dots);
  float dot = horizontalSum(dots);
  for (int64_t j = vectorEnd; j < length; ++j) dot += grad[j] * p[j];
  const __m256 centre = _mm256_set1_ps(dot);
  for (int64_t j = 0; j < vectorEnd; j += kLanes)
    _mm256_storeu_ps(grad + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), _mm256_sub_ps(_mm256_loadu_ps(grad + j), centre)));
  for (int64_t j = vectorEnd; j < length; ++j) grad[j] = p[j] * (grad[j] - dot);
}

}  // namespace
#endif

void softmaxRows(float* rows, const float* add, int64_t count, int64_t length, int64_t stride) {
#ifdef PACE_SOFTMAX_AVX2
  if (!avx2KernelsAvailable()) throw std::logic_error("softmaxRows: this CPU lacks AVX2/FMA");
  for (int64_t i = 0; i < count; ++i) softmaxRow(rows + i * stride, add ? add + i * stride : nullptr, length);
#else
  (void)rows, (void)add, (void)count, (void)length, (void)stride;
  throw std::logic_error("softmaxRows: built without the x86-64 AVX2 kernel");
#endif
}

void softmaxBackwardRows(const float* p, float* grad, int64_t count, int64_t length, int64_t stride) {
#ifdef PACE_SOFTMAX_AVX2
  if (!avx2KernelsAvailable()) throw std::logic_error("softmaxBackwardRows: this CPU lacks AVX2/FMA");
  for (int64_t i = 0; i < count; ++i) softmaxBackwardRow(p + i * stride, grad + i * stride, length);
#else
  (void)p, (void)grad, (void)count, (void)length, (void)stride;
  throw std::logic_error("softmaxBackwardRows: built without the x86-64 AVX2 kernel");
#endif
}

}  // namespace pace::kernels
