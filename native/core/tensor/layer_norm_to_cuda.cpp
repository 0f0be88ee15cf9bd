// layerNormTo's CUDA launches (native/kernels/layer_norm.cu) on the tensors' current stream.
#include "tensor/layer_norm_args.h"

#ifdef PACE_WITH_CUDA_KERNELS

#include <c10/cuda/CUDAGuard.h>

#include "layer_norm.h"
#include "tensor/cuda_launch.h"

namespace pace {

void layerNormForwardCuda(const LayerNormTensors& t) {
  const c10::cuda::CUDAGuard device(t.input.device());
  const cudaStream_t stream = currentCudaStream(t.input);
  if (t.output.scalar_type() == at::kBFloat16) {
    checkLaunch(kernels::launchLayerNormForward(layerNormForwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
                "LayerNorm (forward)");
  } else {
    checkLaunch(kernels::launchLayerNormForward(layerNormForwardArgs<float, float>(t), t.rows, stream),
                "LayerNorm (forward)");
  }
}

void layerNormBackwardCuda(const LayerNormTensors& t) {
  const c10::cuda::CUDAGuard device(t.input.device());
  const cudaStream_t stream = currentCudaStream(t.input);
  if (t.gradOutput.scalar_type() == at::kBFloat16) {
    checkLaunch(kernels::launchLayerNormBackward(layerNormBackwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
                "LayerNorm (backward)");
  } else {
    checkLaunch(kernels::launchLayerNormBackward(layerNormBackwardArgs<float, float>(t), t.rows, stream),
                "LayerNorm (backward)");
  }
}

}  // namespace pace

#endif  // PACE_WITH_CUDA_KERNELS
