#pragma once
// The fused PACE linear's element-wise halves on CUDA (the arithmetic: pace_epilogue_body.h). The GEMMs around
// them run in cuBLAS through libtorch; each epilogue is one pass. Plain CUDA: raw pointers and a stream.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "pace_epilogue_body.h"

namespace pace::kernels {

// Instantiated for <float, float> and <__nv_bfloat16, float>. `rows` is the number of rows of the [rows, out]
// output; `args.tokensPerRow` must be >= 1.
template <typename T, typename Acc>
cudaError_t launchEpilogueForward(const EpilogueForward<T, Acc>& args, int64_t rows, cudaStream_t stream);

template <typename T, typename Acc>
cudaError_t launchEpilogueBackward(const EpilogueBackward<T, Acc>& args, int64_t rows, cudaStream_t stream);

}  // namespace pace::kernels
