// The epilogues' CUDA launches (native/kernels/pace_epilogue.cu) on the tensors' current stream.
#include "peft/pace_epilogue_args.h"

#ifdef PACE_WITH_CUDA_KERNELS

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "pace_epilogue.h"

namespace pace::peft {

namespace {

void check(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

cudaStream_t currentStream(const at::Tensor& on) {
  return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
}

}  // namespace

void epilogueForwardCuda(const EpilogueForwardTensors& t) {
  const c10::cuda::CUDAGuard device(t.stacked.device());
  const cudaStream_t stream = currentStream(t.stacked);
  if (t.stacked.scalar_type() == at::kFloat) {
    check(kernels::launchEpilogueForward(forwardArgs<float, float>(t), t.rows, stream), "PACE epilogue (forward)");
  } else {
    TORCH_CHECK(t.stacked.scalar_type() == at::kBFloat16, "the PACE epilogue on CUDA takes float32 or bfloat16");
    check(kernels::launchEpilogueForward(forwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
          "PACE epilogue (forward)");
  }
}

void epilogueBackwardCuda(const EpilogueBackwardTensors& t) {
  const c10::cuda::CUDAGuard device(t.stackedGrad.device());
  const cudaStream_t stream = currentStream(t.stackedGrad);
  if (t.stackedGrad.scalar_type() == at::kFloat) {
    check(kernels::launchEpilogueBackward(backwardArgs<float, float>(t), t.rows, stream), "PACE epilogue (backward)");
  } else {
    TORCH_CHECK(t.stackedGrad.scalar_type() == at::kBFloat16, "the PACE epilogue on CUDA takes float32 or bfloat16");
    check(kernels::launchEpilogueBackward(backwardArgs<__nv_bfloat16, float>(t), t.rows, stream),
          "PACE epilogue (backward)");
  }
}

}  // namespace pace::peft

#endif  // PACE_WITH_CUDA_KERNELS
