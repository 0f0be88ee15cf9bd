#include "peft/pace_epilogue_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "cpu/pace_epilogue_cpu.h"
#include "peft/pace_epilogue_args.h"

namespace pace::peft {

namespace {

// Elements per CPU task: enough that splitting among threads pays for itself.
constexpr int64_t kCpuGrain = 32768;

at::Tensor prepared(const at::Tensor& t, at::ScalarType dtype) { return t.defined() ? t.to(dtype).contiguous() : t; }

// The kernels index operands by the output's shape alone: an operand of another size or device would be read out
// of bounds, so each is checked here (optional ones only when given).
void checkOperand(const at::Tensor& t, const char* name, int64_t elements, const at::Tensor& output) {
  if (!t.defined()) return;
  TORCH_CHECK(t.device() == output.device(), "the PACE epilogue's ", name, " is on ", t.device(), ", not ",
              output.device());
  TORCH_CHECK(t.numel() == elements, "the PACE epilogue's ", name, " must have ", elements, " elements, not ",
              t.numel());
}

// rows·tokens output rows come from rows samples (the noise and the per-row scale are per sample).
int64_t samplesOf(int64_t outputRows, int64_t tokensPerRow) {
  TORCH_CHECK(tokensPerRow >= 1 && outputRows % tokensPerRow == 0, "the PACE epilogue's ", outputRows,
              " rows are not whole samples of ", tokensPerRow, " tokens");
  return outputRows / tokensPerRow;
}

// Splits [0, total) among the threads on boundaries of `unit` elements (the kernels' packs) where it divides.
template <typename Run>
void splitAmongThreads(int64_t total, int64_t unit, const Run& run) {
  if (total % unit != 0) unit = 1;
  at::parallel_for(0, total / unit, std::max<int64_t>(1, kCpuGrain / unit),
                   [&](int64_t begin, int64_t end) { run(begin * unit, end * unit); });
}

template <typename T, typename Acc>
void forwardOnCpuAs(const EpilogueForwardTensors& t) {
  const kernels::EpilogueForward<T, Acc> args = forwardArgs<T, Acc>(t);
  splitAmongThreads(t.rows * t.outFeatures, kernels::epilogueCpuAlignment<T>(),
                    [&](int64_t begin, int64_t end) { kernels::epilogueForwardCpu(args, begin, end); });
}

template <typename T, typename Acc>
void backwardOnCpuAs(const EpilogueBackwardTensors& t) {
  const kernels::EpilogueBackward<T, Acc> args = backwardArgs<T, Acc>(t);
  splitAmongThreads(t.rows * t.outFeatures, kernels::epilogueCpuAlignment<T>(),
                    [&](int64_t begin, int64_t end) { kernels::epilogueBackwardCpu(args, begin, end); });
}

void forwardOnCpu(const EpilogueForwardTensors& t) {
  switch (t.stacked.scalar_type()) {
    case at::kFloat:
      return forwardOnCpuAs<float, float>(t);
    case at::kBFloat16:
      return forwardOnCpuAs<kernels::Bfloat16, float>(t);
    case at::kDouble:
      return forwardOnCpuAs<double, double>(t);
    default:
      TORCH_CHECK(false, "the PACE epilogue takes float32, bfloat16 or float64, not ", t.stacked.scalar_type());
  }
}

void backwardOnCpu(const EpilogueBackwardTensors& t) {
  switch (t.stackedGrad.scalar_type()) {
    case at::kFloat:
      return backwardOnCpuAs<float, float>(t);
    case at::kBFloat16:
      return backwardOnCpuAs<kernels::Bfloat16, float>(t);
    case at::kDouble:
      return backwardOnCpuAs<double, double>(t);
    default:
      TORCH_CHECK(false, "the PACE epilogue takes float32, bfloat16 or float64, not ", t.stackedGrad.scalar_type());
  }
}

}  // namespace

bool paceEpilogueRuns(const at::Tensor& t) {
  const auto type = t.scalar_type();
  if (t.is_cpu()) return type == at::kFloat || type == at::kBFloat16 || type == at::kDouble;
#ifdef PACE_WITH_CUDA_KERNELS
  if (t.is_cuda()) return type == at::kFloat || type == at::kBFloat16;
#endif
  return false;
}

at::ScalarType epilogueAccumulator(at::ScalarType compute) { return compute == at::kDouble ? at::kDouble : at::kFloat; }

EpilogueForwardResult paceEpilogueForward(EpilogueKind kind, const at::Tensor& stacked, const at::Tensor& bias,
                                          const at::Tensor& shift, const at::Tensor& noise, const at::Tensor& rowScale,
                                          const at::Tensor& residual, int64_t tokensPerRow) {
  TORCH_CHECK(paceEpilogueRuns(stacked), "the PACE epilogue does not run on ", stacked.device(), " in ",
              stacked.scalar_type());
  TORCH_CHECK(stacked.dim() == 2 && stacked.size(1) % 2 == 0, "the PACE epilogue needs [rows, 2·out] products");
  const at::ScalarType compute = stacked.scalar_type(), accumulator = epilogueAccumulator(compute);
  EpilogueForwardTensors t;
  t.kind = kind;
  t.rows = stacked.size(0);
  t.outFeatures = stacked.size(1) / 2;
  t.tokensPerRow = tokensPerRow;
  const int64_t samples = samplesOf(t.rows, tokensPerRow);
  checkOperand(bias, "bias", t.outFeatures, stacked);
  checkOperand(shift, "shift", t.outFeatures, stacked);
  checkOperand(noise, "noise", samples * t.outFeatures, stacked);
  checkOperand(rowScale, "per-row scale", samples, stacked);
  checkOperand(residual, "residual", t.rows * t.outFeatures, stacked);
  t.stacked = stacked.contiguous();
  t.bias = prepared(bias, compute);
  t.shift = prepared(shift, compute);
  t.noise = prepared(noise, accumulator);
  if (kind == EpilogueKind::Residual) {
    TORCH_CHECK(residual.defined(), "the PACE epilogue's residual add needs the residual");
    TORCH_CHECK(residual.scalar_type() == accumulator, "the PACE epilogue's residual must be ", accumulator);
    t.residual = residual.contiguous();
    t.rowScale = prepared(rowScale, accumulator);
    t.output = at::empty({t.rows, t.outFeatures}, stacked.options().dtype(accumulator));
  } else {
    t.output = at::empty({t.rows, t.outFeatures}, stacked.options());
    if (kind == EpilogueKind::Gelu) t.preActivation = at::empty({t.rows, t.outFeatures}, stacked.options());
  }
#ifdef PACE_WITH_CUDA_KERNELS
  if (stacked.is_cuda()) {
    epilogueForwardCuda(t);
    return {t.output, t.preActivation};
  }
#endif
  forwardOnCpu(t);
  return {t.output, t.preActivation};
}

at::Tensor paceEpilogueBackward(EpilogueKind kind, const at::Tensor& gradOut, const at::Tensor& preActivation,
                                const at::Tensor& noise, const at::Tensor& rowScale, int64_t tokensPerRow,
                                at::ScalarType compute) {
  TORCH_CHECK(gradOut.dim() == 2, "the PACE epilogue's gradient must be [rows, out]");
  const at::ScalarType accumulator = epilogueAccumulator(compute);
  EpilogueBackwardTensors t;
  t.kind = kind;
  t.rows = gradOut.size(0);
  t.outFeatures = gradOut.size(1);
  t.tokensPerRow = tokensPerRow;
  const int64_t samples = samplesOf(t.rows, tokensPerRow);
  TORCH_CHECK(kind != EpilogueKind::Gelu || preActivation.defined(), "the PACE epilogue's GELU needs h");
  checkOperand(preActivation, "pre-activation", t.rows * t.outFeatures, gradOut);
  checkOperand(noise, "noise", samples * t.outFeatures, gradOut);
  checkOperand(rowScale, "per-row scale", samples, gradOut);
  t.gradOut = prepared(gradOut, kind == EpilogueKind::Residual ? accumulator : compute);
  t.preActivation = kind == EpilogueKind::Gelu ? prepared(preActivation, compute) : at::Tensor();
  t.noise = prepared(noise, accumulator);
  t.rowScale = kind == EpilogueKind::Residual ? prepared(rowScale, accumulator) : at::Tensor();
  t.stackedGrad = at::empty({t.rows, 2 * t.outFeatures}, gradOut.options().dtype(compute));
  TORCH_CHECK(paceEpilogueRuns(t.stackedGrad), "the PACE epilogue does not run on ", gradOut.device(), " in ", compute);
#ifdef PACE_WITH_CUDA_KERNELS
  if (gradOut.is_cuda()) {
    epilogueBackwardCuda(t);
    return t.stackedGrad;
  }
#endif
  backwardOnCpu(t);
  return t.stackedGrad;
}

}  // namespace pace::peft
