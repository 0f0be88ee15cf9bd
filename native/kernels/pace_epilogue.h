#pragma once
// The fused PACE linear's element-wise halves on CUDA (the arithmetic: pace_epilogue_body.h). The GEMMs around
// them run in cuBLAS through libtorch; each epilogue is one pass. Plain CUDA: raw pointers and a stream.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "pace_epilogue_body.h"

namespace pace::kernels {

// Instantiated for <float, float> and <__nv_bfloat16, float>. `rows` is the number of rows of the [rows, out]
// output; `args.tokensPerRow` must be >= 1. Elements move in 16-byte packs where the row length and pointers
// allow (`packs` false: one at a time, for measuring what the packs gain).
template <typename T, typename Acc>
cudaError_t launchEpilogueForward(const EpilogueForward<T, Acc>& args, int64_t rows, cudaStream_t stream,
                                  bool packs = true);

template <typename T, typename Acc>
cudaError_t launchEpilogueBackward(const EpilogueBackward<T, Acc>& args, int64_t rows, cudaStream_t stream,
                                   bool packs = true);

}  // namespace pace::kernels
