#include "pace_epilogue.h"

namespace pace::kernels {

namespace {

constexpr int kThreads = 256;

int blocksFor(int64_t elements) {
  const int64_t blocks = (elements + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <typename Element>
__global__ void eachElement(Element element, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    element(i);
}

template <typename Element>
cudaError_t launchEach(const Element& element, int64_t total, int64_t tokensPerRow, cudaStream_t stream) {
  if (total <= 0) return cudaSuccess;
  if (tokensPerRow <= 0 || element.outFeatures <= 0) return cudaErrorInvalidValue;
  eachElement<<<blocksFor(total), kThreads, 0, stream>>>(element, total);
  return cudaGetLastError();
}

}  // namespace

template <typename T, typename Acc>
cudaError_t launchEpilogueForward(const EpilogueForward<T, Acc>& args, int64_t rows, cudaStream_t stream) {
  return launchEach(args, rows * args.outFeatures, args.tokensPerRow, stream);
}

template <typename T, typename Acc>
cudaError_t launchEpilogueBackward(const EpilogueBackward<T, Acc>& args, int64_t rows, cudaStream_t stream) {
  return launchEach(args, rows * args.outFeatures, args.tokensPerRow, stream);
}

template cudaError_t launchEpilogueForward<float, float>(const EpilogueForward<float, float>&, int64_t, cudaStream_t);
template cudaError_t launchEpilogueForward<__nv_bfloat16, float>(const EpilogueForward<__nv_bfloat16, float>&, int64_t,
                                                                 cudaStream_t);
template cudaError_t launchEpilogueBackward<float, float>(const EpilogueBackward<float, float>&, int64_t, cudaStream_t);
template cudaError_t launchEpilogueBackward<__nv_bfloat16, float>(const EpilogueBackward<__nv_bfloat16, float>&,
                                                                  int64_t, cudaStream_t);

}  // namespace pace::kernels
