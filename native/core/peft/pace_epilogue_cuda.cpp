// The epilogues' CUDA launches (native/kernels/pace_epilogue.cu) on the tensors' current stream.
#include "peft/pace_epilogue_args.h"

#ifdef PACE_WITH_CUDA_KERNELS

#include <c10/cuda/CUDAGuard.h>

#include "pace_epilogue.h"
#include "tensor/cuda_launch.h"

namespace pace::peft {

void epilogueForwardCuda(const EpilogueForwardTensors& t) {
  const c10::cuda::CUDAGuard device(t.stacked.device());
  const cudaStream_t stream = currentCudaStream(t.stacked);
  if (t.stacked.scalar_type() == at::kFloat) {
    checkLaunch(kernels::launchEpilogueForward(forwardArgs<float, float>(t), t.rows, stream),
                "PACE epilogue (forward)");
  } else {
    TORCH_CHECK(t.stacked.scalar_type() == at::kBFloat16, "the PACE epilogue on CUDA takes float32 or bfloat16");
    checkLaunch(kernels::launchEpilogueForward(forwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
                "PACE epilogue (forward)");
  }
}

void epilogueBackwardCuda(const EpilogueBackwardTensors& t) {
  const c10::cuda::CUDAGuard device(t.stackedGrad.device());
  const cudaStream_t stream = currentCudaStream(t.stackedGrad);
  if (t.stackedGrad.scalar_type() == at::kFloat) {
    checkLaunch(kernels::launchEpilogueBackward(backwardArgs<float, float>(t), t.rows, stream),
                "PACE epilogue (backward)");
  } else {
    TORCH_CHECK(t.stackedGrad.scalar_type() == at::kBFloat16, "the PACE epilogue on CUDA takes float32 or bfloat16");
    checkLaunch(kernels::launchEpilogueBackward(backwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
                "PACE epilogue (backward)");
  }
}

}  // namespace pace::peft

#endif  // PACE_WITH_CUDA_KERNELS
