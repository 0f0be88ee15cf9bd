#include "tensor/layer_norm_to.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "cpu/layer_norm_cpu.h"
#include "tensor/fused_epilogues.h"
#include "tensor/layer_norm_args.h"

namespace pace {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool kernelsRun(const at::Tensor& input, at::ScalarType output) {
  const at::ScalarType type = input.scalar_type();
  if (input.is_cpu())
    return (type == at::kFloat && (output == at::kBFloat16 || output == at::kFloat)) ||
           (type == at::kDouble && output == at::kDouble);
#ifdef PACE_WITH_CUDA_KERNELS
  if (input.is_cuda()) return type == at::kFloat && (output == at::kBFloat16 || output == at::kFloat);
#endif
  return false;
}

// Rows per CPU task: enough features per task that splitting pays for itself.
int64_t cpuGrain(int64_t features) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, features)); }

template <typename T, typename Acc>
void forwardOnCpu(const LayerNormTensors& t) {
  const auto args = layerNormForwardArgs<T, Acc>(t);
  at::parallel_for(0, t.rows, cpuGrain(t.features),
                   [&](int64_t begin, int64_t end) { kernels::layerNormForwardCpu(args, begin, end); });
}

template <typename T, typename Acc>
void backwardOnCpu(const LayerNormTensors& t) {
  const auto args = layerNormBackwardArgs<T, Acc>(t);
  at::parallel_for(0, t.rows, cpuGrain(t.features),
                   [&](int64_t begin, int64_t end) { kernels::layerNormBackwardCpu(args, begin, end); });
}

void runForward(const LayerNormTensors& t) {
#ifdef PACE_WITH_CUDA_KERNELS
  if (t.input.is_cuda()) return layerNormForwardCuda(t);
#endif
  switch (t.output.scalar_type()) {
    case at::kBFloat16:
      return forwardOnCpu<kernels::Bfloat16, float>(t);
    case at::kFloat:
      return forwardOnCpu<float, float>(t);
    default:
      return forwardOnCpu<double, double>(t);
  }
}

void runBackward(const LayerNormTensors& t) {
#ifdef PACE_WITH_CUDA_KERNELS
  if (t.input.is_cuda()) return layerNormBackwardCuda(t);
#endif
  switch (t.gradOutput.scalar_type()) {
    case at::kBFloat16:
      return backwardOnCpu<kernels::Bfloat16, float>(t);
    case at::kFloat:
      return backwardOnCpu<float, float>(t);
    default:
      return backwardOnCpu<double, double>(t);
  }
}

struct LayerNormToFunction : public torch::autograd::Function<LayerNormToFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, int64_t output) {
    const int64_t features = input.size(-1);
    LayerNormTensors t;
    t.features = features;
    t.rows = features == 0 ? 0 : input.numel() / features;
    t.eps = eps;
    t.input = input.reshape({t.rows, features}).contiguous();
    t.weight = weight.contiguous();
    t.bias = bias.contiguous();
    t.output = at::empty({t.rows, features}, input.options().dtype(static_cast<at::ScalarType>(output)));
    t.mean = at::empty({t.rows}, input.options());
    t.rstd = at::empty({t.rows}, input.options());
    runForward(t);
    ctx->save_for_backward({t.input, t.weight, t.mean, t.rstd});
    ctx->saved_data["inputShape"] = input.sizes().vec();
    return t.output.view(input.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradOutputs) {
    const variable_list saved = ctx->get_saved_variables();
    LayerNormTensors t;
    t.input = saved[0];
    t.weight = saved[1];
    t.mean = saved[2];
    t.rstd = saved[3];
    t.rows = t.input.size(0);
    t.features = t.input.size(1);
    t.gradOutput = gradOutputs[0].reshape({t.rows, t.features}).contiguous();
    t.gradInput = at::empty_like(t.input);
    runBackward(t);
    return {t.gradInput.view(ctx->saved_data["inputShape"].toIntVector()), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

bool layerNormToFuses(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      at::ScalarType output) {
  const auto parameter = [&](const at::Tensor& t) {
    return t.defined() && !t.requires_grad() && t.scalar_type() == input.scalar_type() && t.dim() == 1 &&
           t.size(0) == input.size(-1) && t.device() == input.device();
  };
  return fusedEpilogues() && input.dim() >= 1 && kernelsRun(input, output) && parameter(weight) && parameter(bias);
}

at::Tensor layerNormTo(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, double eps,
                       at::ScalarType output) {
  if (!layerNormToFuses(input, weight, bias, output))
    return at::layer_norm(input, {input.size(-1)}, weight, bias, eps).to(output);
  return LayerNormToFunction::apply(input, weight, bias, eps, static_cast<int64_t>(output));
}

}  // namespace pace
