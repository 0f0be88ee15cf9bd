#pragma once
// What the core's calls into native/kernels/*.cu share: the stream to launch on and the check of a launch's
// status. Only for translation units built with the CUDA kernels (PACE_WITH_CUDA_KERNELS).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

namespace pace {

// The current CUDA stream of `on`'s device: where libtorch queues its own work on it, so kernels stay in order.
inline cudaStream_t currentCudaStream(const at::Tensor& on) {
  return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
}

// Throws naming `what` when a launch failed.
inline void checkLaunch(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

}  // namespace pace
