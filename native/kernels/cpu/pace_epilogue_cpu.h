#pragma once
// The fused PACE linear's epilogues on the CPU (the arithmetic: ../pace_epilogue_body.h, shared with the CUDA
// kernels, packs included): elements [begin, end) of the [rows, out] output, so that callers can split the work
// among threads. Instantiated for <float, float>, <Bfloat16, float> and <double, double>.
#include <cstdint>

#include "cpu/bfloat16.h"
#include "pace_epilogue_body.h"

namespace pace::kernels {

// The span callers should split at: elements come in packs of this many where the epilogue allows
// (vectorizable), so a split on a multiple of it keeps the packs whole.
template <typename T>
constexpr int64_t epilogueCpuAlignment() {
  return packWidth<T>();
}

template <typename T, typename Acc>
void epilogueForwardCpu(const EpilogueForward<T, Acc>& args, int64_t begin, int64_t end);

template <typename T, typename Acc>
void epilogueBackwardCpu(const EpilogueBackward<T, Acc>& args, int64_t begin, int64_t end);

}  // namespace pace::kernels
