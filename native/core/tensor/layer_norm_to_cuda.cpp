// layerNormTo's CUDA launches (native/kernels/layer_norm.cu) on the tensors' current stream.
#include "tensor/layer_norm_args.h"

#ifdef PACE_WITH_CUDA_KERNELS

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "layer_norm.h"

namespace pace {

namespace {

void check(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

cudaStream_t currentStream(const at::Tensor& on) {
  return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
}

}  // namespace

void layerNormForwardCuda(const LayerNormTensors& t) {
  const c10::cuda::CUDAGuard device(t.input.device());
  const cudaStream_t stream = currentStream(t.input);
  if (t.output.scalar_type() == at::kBFloat16) {
    check(kernels::launchLayerNormForward(layerNormForwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
          "LayerNorm (forward)");
  } else {
    check(kernels::launchLayerNormForward(layerNormForwardArgs<float, float>(t), t.rows, stream),
          "LayerNorm (forward)");
  }
}

void layerNormBackwardCuda(const LayerNormTensors& t) {
  const c10::cuda::CUDAGuard device(t.input.device());
  const cudaStream_t stream = currentStream(t.input);
  if (t.gradOutput.scalar_type() == at::kBFloat16) {
    check(kernels::launchLayerNormBackward(layerNormBackwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
          "LayerNorm (backward)");
  } else {
    check(kernels::launchLayerNormBackward(layerNormBackwardArgs<float, float>(t), t.rows, stream),
          "LayerNorm (backward)");
  }
}

}  // namespace pace

#endif  // PACE_WITH_CUDA_KERNELS
