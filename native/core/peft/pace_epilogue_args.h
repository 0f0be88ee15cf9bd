#pragma once
// The epilogue's tensors as the kernels' argument structs (peft/pace_epilogue_ops.cpp for the CPU loops,
// peft/pace_epilogue_cuda.cpp for the CUDA kernels, each with its own bfloat16 storage type).
#include <ATen/ATen.h>

#include "pace_epilogue_body.h"

namespace pace::peft {

// Contiguous, in their kernel dtypes; undefined where absent. `output` is allocated by the caller.
struct EpilogueForwardTensors {
  kernels::EpilogueKind kind = kernels::EpilogueKind::Plain;
  at::Tensor stacked, bias, shift, noise, rowScale, residual, output, preActivation;
  int64_t rows = 0, outFeatures = 0, tokensPerRow = 1;
};

struct EpilogueBackwardTensors {
  kernels::EpilogueKind kind = kernels::EpilogueKind::Plain;
  at::Tensor gradOut, preActivation, noise, rowScale, stackedGrad;
  int64_t rows = 0, outFeatures = 0, tokensPerRow = 1;
};

template <typename P>
P* pointer(const at::Tensor& t) {
  return t.defined() ? static_cast<P*>(t.data_ptr()) : nullptr;
}

template <typename T, typename Acc>
kernels::EpilogueForward<T, Acc> forwardArgs(const EpilogueForwardTensors& t) {
  const bool residual = t.kind == kernels::EpilogueKind::Residual;
  return {pointer<const T>(t.stacked),
          pointer<const T>(t.bias),
          pointer<const T>(t.shift),
          pointer<const Acc>(t.noise),
          pointer<const Acc>(t.rowScale),
          pointer<const Acc>(t.residual),
          residual ? nullptr : pointer<T>(t.output),
          pointer<T>(t.preActivation),
          residual ? pointer<Acc>(t.output) : nullptr,
          t.outFeatures,
          t.tokensPerRow,
          t.kind};
}

template <typename T, typename Acc>
kernels::EpilogueBackward<T, Acc> backwardArgs(const EpilogueBackwardTensors& t) {
  const bool residual = t.kind == kernels::EpilogueKind::Residual;
  return {residual ? nullptr : pointer<const T>(t.gradOut),
          residual ? pointer<const Acc>(t.gradOut) : nullptr,
          pointer<const T>(t.preActivation),
          pointer<const Acc>(t.noise),
          pointer<const Acc>(t.rowScale),
          pointer<T>(t.stackedGrad),
          t.outFeatures,
          t.tokensPerRow,
          t.kind};
}

#ifdef PACE_WITH_CUDA_KERNELS
// peft/pace_epilogue_cuda.cpp: float32 and bfloat16 on the tensors' device and current stream.
void epilogueForwardCuda(const EpilogueForwardTensors& tensors);
void epilogueBackwardCuda(const EpilogueBackwardTensors& tensors);
#endif

}  // namespace pace::peft
