#include "layer_norm.h"

namespace pace::kernels {

namespace {

constexpr int kThreads = 128;  // per row: a ViT-B row of 768 features is 6 per thread
constexpr int kWarps = kThreads / 32;

// The sum of `value` over the block, the same in every thread (each adds the warps' partial sums in one order).
template <typename Acc>
__device__ Acc blockSum(Acc value, Acc* partials) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  __syncthreads();  // the previous call's readers are done with `partials`
  if (threadIdx.x % 32 == 0) partials[threadIdx.x / 32] = value;
  __syncthreads();
  Acc total = 0;
  for (int w = 0; w < kWarps; ++w) total += partials[w];
  return total;
}

int blocksFor(int64_t rows) { return static_cast<int>(rows < (1 << 20) ? rows : (1 << 20)); }

template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads) forwardRows(LayerNormForward<T, Acc> args, int64_t rows) {
  __shared__ Acc partials[kWarps];
  const int64_t features = args.features;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Acc* x = args.input + row * features;
    Acc sum = 0;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) sum += x[c];
    const Acc mu = blockSum(sum, partials) / static_cast<Acc>(features);
    Acc squares = 0;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) {
      const Acc d = x[c] - mu;
      squares += d * d;
    }
    const Acc r = reciprocalSqrt(blockSum(squares, partials) / static_cast<Acc>(features) + args.eps);
    T* y = args.output + row * features;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) y[c] = args.normalized(x[c], mu, r, c);
    if (threadIdx.x == 0) {
      args.mean[row] = mu;
      args.rstd[row] = r;
    }
  }
}

template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads) backwardRows(LayerNormBackward<T, Acc> args, int64_t rows) {
  __shared__ Acc partials[kWarps];
  const int64_t features = args.features;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    Acc sumGrad = 0, sumGradNormalized = 0;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) {
      const Acc g = args.scaledGrad(row, c);
      sumGrad += g;
      sumGradNormalized += g * args.normalizedInput(row, c);
    }
    sumGrad = blockSum(sumGrad, partials);
    sumGradNormalized = blockSum(sumGradNormalized, partials);
    Acc* dx = args.gradInput + row * features;
    for (int64_t c = threadIdx.x; c < features; c += kThreads)
      dx[c] = args.inputGrad(row, c, sumGrad, sumGradNormalized);
  }
}

}  // namespace

template <typename T, typename Acc>
cudaError_t launchLayerNormForward(const LayerNormForward<T, Acc>& args, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (args.features <= 0) return cudaErrorInvalidValue;
  forwardRows<T, Acc><<<blocksFor(rows), kThreads, 0, stream>>>(args, rows);
  return cudaGetLastError();
}

template <typename T, typename Acc>
cudaError_t launchLayerNormBackward(const LayerNormBackward<T, Acc>& args, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (args.features <= 0) return cudaErrorInvalidValue;
  backwardRows<T, Acc><<<blocksFor(rows), kThreads, 0, stream>>>(args, rows);
  return cudaGetLastError();
}

template cudaError_t launchLayerNormForward<__nv_bfloat16, float>(const LayerNormForward<__nv_bfloat16, float>&,
                                                                  int64_t, cudaStream_t);
template cudaError_t launchLayerNormForward<float, float>(const LayerNormForward<float, float>&, int64_t, cudaStream_t);
template cudaError_t launchLayerNormBackward<__nv_bfloat16, float>(const LayerNormBackward<__nv_bfloat16, float>&,
                                                                   int64_t, cudaStream_t);
template cudaError_t launchLayerNormBackward<float, float>(const LayerNormBackward<float, float>&, int64_t,
                                                           cudaStream_t);

}  // namespace pace::kernels
