#pragma once
// LayerNorm with a narrower output than its arithmetic on the CPU (the formulas: ../layer_norm_body.h, shared
// with the CUDA kernels): rows [begin, end), so that callers can split the rows among threads. Instantiated for
// <Bfloat16, float>, <float, float> and <double, double>.
#include <cstdint>

#include "cpu/bfloat16.h"
#include "layer_norm_body.h"

namespace pace::kernels {

template <typename T, typename Acc>
void layerNormForwardCpu(const LayerNormForward<T, Acc>& args, int64_t begin, int64_t end);

template <typename T, typename Acc>
void layerNormBackwardCpu(const LayerNormBackward<T, Acc>& args, int64_t begin, int64_t end);

}  // namespace pace::kernels
