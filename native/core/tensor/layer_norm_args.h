#pragma once
// layerNormTo's tensors as the kernels' argument structs (tensor/layer_norm_to.cpp for the CPU loops,
// tensor/layer_norm_to_cuda.cpp for the CUDA kernels, each with its own bfloat16 storage type).
#include <ATen/ATen.h>

#include "layer_norm_body.h"

namespace pace {

struct LayerNormTensors {
  at::Tensor input, weight, bias, output, mean, rstd;  // contiguous; input [rows, features]
  at::Tensor gradOutput, gradInput;                    // the backward's
  int64_t rows = 0, features = 0;
  double eps = 0;
};

template <typename T, typename Acc>
kernels::LayerNormForward<T, Acc> layerNormForwardArgs(const LayerNormTensors& t) {
  return {static_cast<const Acc*>(t.input.data_ptr()),
          static_cast<const Acc*>(t.weight.data_ptr()),
          static_cast<const Acc*>(t.bias.data_ptr()),
          static_cast<T*>(t.output.data_ptr()),
          static_cast<Acc*>(t.mean.data_ptr()),
          static_cast<Acc*>(t.rstd.data_ptr()),
          t.features,
          static_cast<Acc>(t.eps)};
}

template <typename T, typename Acc>
kernels::LayerNormBackward<T, Acc> layerNormBackwardArgs(const LayerNormTensors& t) {
  return {static_cast<const T*>(t.gradOutput.data_ptr()),
          static_cast<const Acc*>(t.input.data_ptr()),
          static_cast<const Acc*>(t.weight.data_ptr()),
          static_cast<const Acc*>(t.mean.data_ptr()),
          static_cast<const Acc*>(t.rstd.data_ptr()),
          static_cast<Acc*>(t.gradInput.data_ptr()),
          t.features};
}

#ifdef PACE_WITH_CUDA_KERNELS
// tensor/layer_norm_to_cuda.cpp: float32 to bf16 or float32 on the tensors' device and current stream.
void layerNormForwardCuda(const LayerNormTensors& tensors);
void layerNormBackwardCuda(const LayerNormTensors& tensors);
#endif

}  // namespace pace
