#include "peft/pace_linear_cuda.h"

#ifdef PACE_WITH_CUDA_KERNELS

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

bool paceEpilogueOnDevice(const at::Tensor& t) {
  return t.is_cuda() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

at::Tensor paceEpilogueForwardCuda(const at::Tensor& stacked, const at::Tensor& bias, const at::Tensor& shift,
                                   const at::Tensor& noise, int64_t tokensPerRow) {
  const int64_t rows = stacked.size(0), out = stacked.size(1) / 2;
  const at::Tensor source = stacked.contiguous(), b = bias.to(stacked.scalar_type()).contiguous(),
                   c = shift.to(stacked.scalar_type()).contiguous(), z = noise.to(at::kFloat).contiguous();
  at::Tensor result = at::empty({rows, out}, stacked.options());
  const cudaStream_t stream = currentStream(stacked);
  if (stacked.scalar_type() == at::kFloat) {
    check(kernels::launchPaceEpilogueForward<float>(source.data_ptr<float>(), b.data_ptr<float>(), c.data_ptr<float>(),
                                                    z.data_ptr<float>(), result.data_ptr<float>(), rows, out,
                                                    tokensPerRow, stream),
          "PACE epilogue (forward)");
  } else {
    using bf16 = __nv_bfloat16;
    check(kernels::launchPaceEpilogueForward<bf16>(
              reinterpret_cast<const bf16*>(source.data_ptr<at::BFloat16>()),
              reinterpret_cast<const bf16*>(b.data_ptr<at::BFloat16>()),
              reinterpret_cast<const bf16*>(c.data_ptr<at::BFloat16>()), z.data_ptr<float>(),
              reinterpret_cast<bf16*>(result.data_ptr<at::BFloat16>()), rows, out, tokensPerRow, stream),
          "PACE epilogue (forward)");
  }
  return result;
}

at::Tensor paceEpilogueBackwardCuda(const at::Tensor& gradOut, const at::Tensor& noise, int64_t tokensPerRow) {
  const int64_t rows = gradOut.size(0), out = gradOut.size(1);
  const at::Tensor dy = gradOut.contiguous(), z = noise.to(at::kFloat).contiguous();
  at::Tensor result = at::empty({rows, 2 * out}, gradOut.options());
  const cudaStream_t stream = currentStream(gradOut);
  if (gradOut.scalar_type() == at::kFloat) {
    check(kernels::launchPaceEpilogueBackward<float>(dy.data_ptr<float>(), z.data_ptr<float>(),
                                                     result.data_ptr<float>(), rows, out, tokensPerRow, stream),
          "PACE epilogue (backward)");
  } else {
    using bf16 = __nv_bfloat16;
    check(kernels::launchPaceEpilogueBackward<bf16>(
              reinterpret_cast<const bf16*>(dy.data_ptr<at::BFloat16>()), z.data_ptr<float>(),
              reinterpret_cast<bf16*>(result.data_ptr<at::BFloat16>()), rows, out, tokensPerRow, stream),
          "PACE epilogue (backward)");
  }
  return result;
}

}  // namespace pace::peft

#endif  // PACE_WITH_CUDA_KERNELS
