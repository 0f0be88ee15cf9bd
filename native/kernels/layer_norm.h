#pragma once
// LayerNorm with a narrower output than its arithmetic, on CUDA (the formulas: layer_norm_body.h): one block of
// threads per row. Plain CUDA: raw pointers and a stream.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "layer_norm_body.h"

namespace pace::kernels {

// Instantiated for <__nv_bfloat16, float> and <float, float>.
template <typename T, typename Acc>
cudaError_t launchLayerNormForward(const LayerNormForward<T, Acc>& args, int64_t rows, cudaStream_t stream);

template <typename T, typename Acc>
cudaError_t launchLayerNormBackward(const LayerNormBackward<T, Acc>& args, int64_t rows, cudaStream_t stream);

}  // namespace pace::kernels
