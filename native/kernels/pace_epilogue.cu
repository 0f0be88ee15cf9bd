#include "pace_epilogue.h"

namespace pace::kernels {

namespace {

constexpr int kThreads = 256;

int blocksFor(int64_t elements) {
  const int64_t blocks = (elements + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <typename T>
__global__ void epilogueForward(const T* __restrict__ stacked, const T* __restrict__ bias, const T* __restrict__ shift,
                                const float* __restrict__ noise, T* __restrict__ out, int64_t rows, int64_t outFeatures,
                                int64_t tokensPerRow) {
  const int64_t total = rows * outFeatures;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / outFeatures;
    const int64_t channel = i - row * outFeatures;
    const T* source = stacked + row * 2 * outFeatures;
    float frozen = static_cast<float>(source[channel]);
    float adapter = static_cast<float>(source[outFeatures + channel]);
    if (bias) frozen += static_cast<float>(bias[channel]);
    if (shift) adapter += static_cast<float>(shift[channel]);
    const float z = noise ? noise[(row / tokensPerRow) * outFeatures + channel] : 1.0f;
    out[i] = static_cast<T>(frozen + z * adapter);
  }
}

template <typename T>
__global__ void epilogueBackward(const T* __restrict__ gradOut, const float* __restrict__ noise,
                                 T* __restrict__ stackedGrad, int64_t rows, int64_t outFeatures, int64_t tokensPerRow) {
  const int64_t total = rows * outFeatures;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / outFeatures;
    const int64_t channel = i - row * outFeatures;
    const float grad = static_cast<float>(gradOut[i]);
    const float z = noise ? noise[(row / tokensPerRow) * outFeatures + channel] : 1.0f;
    T* target = stackedGrad + row * 2 * outFeatures;
    target[channel] = static_cast<T>(grad);
    target[outFeatures + channel] = static_cast<T>(z * grad);
  }
}

}  // namespace

template <typename T>
cudaError_t launchPaceEpilogueForward(const T* stacked, const T* bias, const T* shift, const float* noise, T* out,
                                      int64_t rows, int64_t outFeatures, int64_t tokensPerRow, cudaStream_t stream) {
  if (rows <= 0 || outFeatures <= 0) return cudaSuccess;
  if (tokensPerRow <= 0) return cudaErrorInvalidValue;
  epilogueForward<T><<<blocksFor(rows * outFeatures), kThreads, 0, stream>>>(stacked, bias, shift, noise, out, rows,
                                                                             outFeatures, tokensPerRow);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchPaceEpilogueBackward(const T* gradOut, const float* noise, T* stackedGrad, int64_t rows,
                                       int64_t outFeatures, int64_t tokensPerRow, cudaStream_t stream) {
  if (rows <= 0 || outFeatures <= 0) return cudaSuccess;
  if (tokensPerRow <= 0) return cudaErrorInvalidValue;
  epilogueBackward<T><<<blocksFor(rows * outFeatures), kThreads, 0, stream>>>(gradOut, noise, stackedGrad, rows,
                                                                              outFeatures, tokensPerRow);
  return cudaGetLastError();
}

template cudaError_t launchPaceEpilogueForward<float>(const float*, const float*, const float*, const float*, float*,
                                                      int64_t, int64_t, int64_t, cudaStream_t);
template cudaError_t launchPaceEpilogueForward<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*,
                                                              const __nv_bfloat16*, const float*, __nv_bfloat16*,
                                                              int64_t, int64_t, int64_t, cudaStream_t);
template cudaError_t launchPaceEpilogueBackward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t,
                                                       cudaStream_t);
template cudaError_t launchPaceEpilogueBackward<__nv_bfloat16>(const __nv_bfloat16*, const float*, __nv_bfloat16*,
                                                               int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace pace::kernels
