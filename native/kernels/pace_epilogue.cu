#include "pace_epilogue.h"

namespace pace::kernels {

namespace {

constexpr int kThreads = 256;

int blocksFor(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

// Item i is the span of V elements starting at i·V.
template <int V, typename Epilogue>
__global__ void eachSpan(Epilogue epilogue, int64_t items) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    epilogue.template span<V>(i * V);
}

// Packs of 16 bytes of T where the row length and every pointer allow, single elements otherwise.
template <typename T, typename Epilogue>
cudaError_t launchSpans(const Epilogue& epilogue, int64_t rows, cudaStream_t stream, bool packs) {
  const int64_t total = rows * epilogue.outFeatures;
  if (total <= 0) return cudaSuccess;
  if (epilogue.tokensPerRow <= 0 || epilogue.outFeatures <= 0) return cudaErrorInvalidValue;
  constexpr int V = packWidth<T>();
  if (packs && epilogue.template vectorizable<V>()) {
    eachSpan<V><<<blocksFor(total / V), kThreads, 0, stream>>>(epilogue, total / V);
  } else {
    eachSpan<1><<<blocksFor(total), kThreads, 0, stream>>>(epilogue, total);
  }
  return cudaGetLastError();
}

}  // namespace

template <typename T, typename Acc>
cudaError_t launchEpilogueForward(const EpilogueForward<T, Acc>& args, int64_t rows, cudaStream_t stream, bool packs) {
  return launchSpans<T>(args, rows, stream, packs);
}

template <typename T, typename Acc>
cudaError_t launchEpilogueBackward(const EpilogueBackward<T, Acc>& args, int64_t rows, cudaStream_t stream,
                                   bool packs) {
  return launchSpans<T>(args, rows, stream, packs);
}

template cudaError_t launchEpilogueForward<float, float>(const EpilogueForward<float, float>&, int64_t, cudaStream_t,
                                                         bool);
template cudaError_t launchEpilogueForward<__nv_bfloat16, float>(const EpilogueForward<__nv_bfloat16, float>&, int64_t,
                                                                 cudaStream_t, bool);
template cudaError_t launchEpilogueBackward<float, float>(const EpilogueBackward<float, float>&, int64_t, cudaStream_t,
                                                          bool);
template cudaError_t launchEpilogueBackward<__nv_bfloat16, float>(const EpilogueBackward<__nv_bfloat16, float>&,
                                                                  int64_t, cudaStream_t, bool);

}  // namespace pace::kernels
