#include "cpu/layer_norm_cpu.h"

namespace pace::kernels {

template <typename T, typename Acc>
void layerNormForwardCpu(const LayerNormForward<T, Acc>& args, int64_t begin, int64_t end) {
  const int64_t features = args.features;
  for (int64_t row = begin; row < end; ++row) {
    const Acc* x = args.input + row * features;
    Acc sum = 0;
    for (int64_t c = 0; c < features; ++c) sum += x[c];
    const Acc mu = sum / static_cast<Acc>(features);
    Acc squares = 0;
    for (int64_t c = 0; c < features; ++c) squares += (x[c] - mu) * (x[c] - mu);
    const Acc r = reciprocalSqrt(squares / static_cast<Acc>(features) + args.eps);
    T* y = args.output + row * features;
    for (int64_t c = 0; c < features; ++c) y[c] = args.normalized(x[c], mu, r, c);
    args.mean[row] = mu;
    args.rstd[row] = r;
  }
}

template <typename T, typename Acc>
void layerNormBackwardCpu(const LayerNormBackward<T, Acc>& args, int64_t begin, int64_t end) {
  const int64_t features = args.features;
  for (int64_t row = begin; row < end; ++row) {
    Acc sumGrad = 0, sumGradNormalized = 0;
    for (int64_t c = 0; c < features; ++c) {
      const Acc g = args.scaledGrad(row, c);
      sumGrad += g;
      sumGradNormalized += g * args.normalizedInput(row, c);
    }
    Acc* dx = args.gradInput + row * features;
    for (int64_t c = 0; c < features; ++c) dx[c] = args.inputGrad(row, c, sumGrad, sumGradNormalized);
  }
}

template void layerNormForwardCpu<Bfloat16, float>(const LayerNormForward<Bfloat16, float>&, int64_t, int64_t);
template void layerNormForwardCpu<float, float>(const LayerNormForward<float, float>&, int64_t, int64_t);
template void layerNormForwardCpu<double, double>(const LayerNormForward<double, double>&, int64_t, int64_t);
template void layerNormBackwardCpu<Bfloat16, float>(const LayerNormBackward<Bfloat16, float>&, int64_t, int64_t);
template void layerNormBackwardCpu<float, float>(const LayerNormBackward<float, float>&, int64_t, int64_t);
template void layerNormBackwardCpu<double, double>(const LayerNormBackward<double, double>&, int64_t, int64_t);

}  // namespace pace::kernels
