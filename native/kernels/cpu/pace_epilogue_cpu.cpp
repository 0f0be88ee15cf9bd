#include "cpu/pace_epilogue_cpu.h"

namespace pace::kernels {

template <typename T, typename Acc>
void epilogueForwardCpu(const EpilogueForward<T, Acc>& args, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) args(i);
}

template <typename T, typename Acc>
void epilogueBackwardCpu(const EpilogueBackward<T, Acc>& args, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) args(i);
}

template void epilogueForwardCpu<float, float>(const EpilogueForward<float, float>&, int64_t, int64_t);
template void epilogueForwardCpu<Bfloat16, float>(const EpilogueForward<Bfloat16, float>&, int64_t, int64_t);
template void epilogueForwardCpu<double, double>(const EpilogueForward<double, double>&, int64_t, int64_t);
template void epilogueBackwardCpu<float, float>(const EpilogueBackward<float, float>&, int64_t, int64_t);
template void epilogueBackwardCpu<Bfloat16, float>(const EpilogueBackward<Bfloat16, float>&, int64_t, int64_t);
template void epilogueBackwardCpu<double, double>(const EpilogueBackward<double, double>&, int64_t, int64_t);

}  // namespace pace::kernels
