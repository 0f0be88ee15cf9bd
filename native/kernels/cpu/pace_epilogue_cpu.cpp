#include "cpu/pace_epilogue_cpu.h"

namespace pace::kernels {

namespace {

// Packs where the epilogue allows and [begin, end) is cut on pack boundaries, single elements otherwise: the
// GPU's choice, so the CPU tests cover both of its paths.
template <typename T, typename Epilogue>
void spans(const Epilogue& epilogue, int64_t begin, int64_t end) {
  constexpr int V = packWidth<T>();
  if (epilogue.template vectorizable<V>() && begin % V == 0 && end % V == 0) {
    for (int64_t first = begin; first < end; first += V) epilogue.template span<V>(first);
  } else {
    for (int64_t i = begin; i < end; ++i) epilogue.template span<1>(i);
  }
}

}  // namespace

template <typename T, typename Acc>
void epilogueForwardCpu(const EpilogueForward<T, Acc>& args, int64_t begin, int64_t end) {
  spans<T>(args, begin, end);
}

template <typename T, typename Acc>
void epilogueBackwardCpu(const EpilogueBackward<T, Acc>& args, int64_t begin, int64_t end) {
  spans<T>(args, begin, end);
}

template void epilogueForwardCpu<float, float>(const EpilogueForward<float, float>&, int64_t, int64_t);
template void epilogueForwardCpu<Bfloat16, float>(const EpilogueForward<Bfloat16, float>&, int64_t, int64_t);
template void epilogueForwardCpu<double, double>(const EpilogueForward<double, double>&, int64_t, int64_t);
template void epilogueBackwardCpu<float, float>(const EpilogueBackward<float, float>&, int64_t, int64_t);
template void epilogueBackwardCpu<Bfloat16, float>(const EpilogueBackward<Bfloat16, float>&, int64_t, int64_t);
template void epilogueBackwardCpu<double, double>(const EpilogueBackward<double, double>&, int64_t, int64_t);

}  // namespace pace::kernels
