#include "peft/pace_linear.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "errors.h"
#include "peft/pace_epilogue_ops.h"
#include "system/dynamic_parallel.h"
#include "tensor/fused_epilogues.h"
#include "tensor/precision.h"

namespace pace::peft {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// target = W0 + diag(z)·ΔW for one row's multiplier z [out]. A plain loop over output channels split among
// the threads (run inline when called from inside a parallel region): ATen's broadcasting addcmul ran at a
// fraction of memory speed and cost a third of the GEMM.
void buildRowWeight(at::Tensor& target, const at::Tensor& weight, const at::Tensor& deltaWeight, const at::Tensor& z) {
  if (weight.scalar_type() != at::kFloat && weight.scalar_type() != at::kDouble) {
    at::addcmul_out(target, weight, z.unsqueeze(1), deltaWeight);
    return;
  }
  const int64_t out = weight.size(0), in = weight.size(1);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "buildRowWeight", [&] {
    const scalar_t* __restrict w = weight.data_ptr<scalar_t>();
    const scalar_t* __restrict d = deltaWeight.data_ptr<scalar_t>();
    const scalar_t* __restrict scale = z.data_ptr<scalar_t>();
    scalar_t* __restrict result = target.data_ptr<scalar_t>();
    at::parallel_for(0, out, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in)), [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const scalar_t factor = scale[o];
        for (int64_t i = 0; i < in; ++i) result[o * in + i] = w[o * in + i] + factor * d[o * in + i];
      }
    });
  });
}

// target[s] = lhs[s]·W_sᵀ (forward) or lhs[s]·W_s (the input gradient) for every row s, W_s = W0 + diag(z_s)·ΔW.
// With at least as many rows as threads, the rows are shared among the threads, each building a row's weight
// into its own cache-resident buffer and running that row's GEMM single-threaded (the BLAS runs one thread
// inside our parallel region). Against one row at a time with every thread in each GEMM this is as fast on a
// quiet machine and faster on a busy one (bench/RESULTS.md): one join per linear instead of one per row, and a
// core slowed by a neighbour does fewer rows. With fewer rows than threads, one row at a time keeps every core
// busy.
void perRowProducts(at::Tensor& target, const at::Tensor& lhs, const at::Tensor& weight, const at::Tensor& deltaWeight,
                    const at::Tensor& multiplier, bool transposed) {
  // Host loops read these tensors' memory (and a GPU's current stream is per thread): CPU tensors only.
  TORCH_CHECK(weight.is_cpu() && lhs.is_cpu(), "paceLinear: per-row weights are built on the CPU only");
  const at::Tensor w0 = weight.contiguous(), delta = deltaWeight.contiguous(), z = multiplier.contiguous();
  const auto product = [&](at::Tensor& buffer, int64_t s) {
    buildRowWeight(buffer, w0, delta, z[s]);
    at::Tensor row = target[s];
    at::mm_out(row, lhs[s], transposed ? buffer.t() : buffer);
  };
  const int64_t rows = lhs.size(0), threads = std::max(1, at::get_num_threads());
  if (rows < threads) {
    at::Tensor buffer = at::empty_like(w0);
    for (int64_t s = 0; s < rows; ++s) product(buffer, s);
    return;
  }
  std::vector<at::Tensor> buffers(static_cast<size_t>(threads));
  forEachDynamic(rows, [&](int64_t s) {
    at::Tensor& buffer = buffers.at(static_cast<size_t>(at::get_thread_num()));
    if (!buffer.defined()) buffer = at::empty_like(w0);
    product(buffer, s);
  });
}

at::Tensor forwardPerRow(const at::Tensor& x3, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& deltaWeight, const at::Tensor& shift, const at::Tensor& multiplier) {
  const int64_t rows = x3.size(0), tokens = x3.size(1), out = weight.size(0);
  at::Tensor y = at::empty({rows, tokens, out}, x3.options());
  perRowProducts(y, x3, weight, deltaWeight, multiplier, /*transposed=*/true);
  return y.add_((multiplier * shift).add_(bias).unsqueeze(1));  // + b0 + z ⊙ c, per row
}

// The stacked product X·[W0; ΔW]ᵀ with its epilogue in one pass where the epilogue kernels run, else (a plain
// epilogue only) by ATen ops. Returns the output [rows, tokens, out] and, for Gelu, h.
EpilogueForwardResult forwardStacked(const at::Tensor& x3, const at::Tensor& weight, const at::Tensor& bias,
                                     const at::Tensor& deltaWeight, const at::Tensor& shift,
                                     const at::Tensor& multiplier, EpilogueKind kind, const at::Tensor& residual,
                                     const at::Tensor& rowScale) {
  const int64_t rows = x3.size(0), tokens = x3.size(1), out = weight.size(0);
  const at::Tensor both = at::mm(x3.reshape({rows * tokens, -1}), at::cat({weight, deltaWeight}, 0).t());
  if (paceEpilogueRuns(both)) {
    EpilogueForwardResult result =
        paceEpilogueForward(kind, both, bias, shift, multiplier, rowScale,
                            residual.defined() ? residual.reshape({rows * tokens, out}) : residual, tokens);
    result.output = result.output.view({rows, tokens, out});
    return result;
  }
  TORCH_CHECK(kind == EpilogueKind::Plain, "the PACE linear's fused epilogue does not run on ", both.device(), " in ",
              both.scalar_type());
  const at::Tensor frozen = both.narrow(1, 0, out).reshape({rows, tokens, out});
  const at::Tensor adapted = both.narrow(1, out, out).reshape({rows, tokens, out});
  return {(adapted + shift).mul_(multiplier.unsqueeze(1)).add_(frozen).add_(bias), at::Tensor()};
}

// bias and shift are always defined here (paceLinear passes zeros for absent ones); so are residual and rowScale,
// empty when the epilogue takes none (libtorch 1.13's custom functions take no undefined inputs).
struct PaceLinearFunction : public torch::autograd::Function<PaceLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& deltaWeight, const at::Tensor& shift,
                            const at::Tensor& multiplier, const at::Tensor& residual, const at::Tensor& rowScale,
                            int64_t strategy, int64_t epilogue) {
    const int64_t rows = input.size(0), in = input.size(-1);
    const at::Tensor x3 = input.reshape({rows, -1, in});
    const auto chosen = static_cast<PaceLinearStrategy>(strategy);
    const auto kind = static_cast<EpilogueKind>(epilogue);
    const at::Tensor scale = rowScale.numel() > 0 ? rowScale : at::Tensor();
    EpilogueForwardResult y;
    if (chosen == PaceLinearStrategy::PerRowWeight) {
      TORCH_CHECK(kind == EpilogueKind::Plain, "per-row weights take no fused epilogue");
      y.output = forwardPerRow(x3, weight, bias, deltaWeight, shift, multiplier);
    } else {
      y = forwardStacked(x3, weight, bias, deltaWeight, shift, multiplier, kind,
                         kind == EpilogueKind::Residual ? residual : at::Tensor(), scale);
    }
    ctx->save_for_backward({x3, weight, deltaWeight, multiplier, y.preActivation, scale});
    ctx->saved_data["strategy"] = strategy;
    ctx->saved_data["epilogue"] = epilogue;
    ctx->saved_data["inputShape"] = input.sizes().vec();
    std::vector<int64_t> outShape = input.sizes().vec();
    outShape.back() = weight.size(0);
    return y.output.view(outShape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradOutputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x3 = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& deltaWeight = saved[2];
    const at::Tensor& multiplier = saved[3];
    const at::Tensor& preActivation = saved[4];
    const at::Tensor& rowScale = saved[5];
    const auto strategy = static_cast<PaceLinearStrategy>(ctx->saved_data["strategy"].toInt());
    const auto kind = static_cast<EpilogueKind>(ctx->saved_data["epilogue"].toInt());
    const std::vector<int64_t> inputShape = ctx->saved_data["inputShape"].toIntVector();
    const int64_t rows = x3.size(0), tokens = x3.size(1), in = x3.size(2), out = weight.size(0);

    const at::Tensor x2 = x3.reshape({rows * tokens, in});
    // dH (the gradient of the linear's own output) and z ⊙ dH, side by side in stackedGrad where the epilogue ran.
    at::Tensor stackedGrad, dy2, scaled2;
    if (strategy == PaceLinearStrategy::StackedWeight && paceEpilogueRuns(x3)) {
      stackedGrad = paceEpilogueBackward(kind, gradOutputs[0].reshape({rows * tokens, out}), preActivation, multiplier,
                                         rowScale, tokens, x3.scalar_type());
      dy2 = stackedGrad.narrow(1, 0, out);
      scaled2 = stackedGrad.narrow(1, out, out);
    } else {
      dy2 = gradOutputs[0].reshape({rows * tokens, out});
      scaled2 = (dy2.view({rows, tokens, out}) * multiplier.unsqueeze(1)).view({rows * tokens, out});
    }

    at::Tensor gradInput, gradWeight, gradBias, gradDelta, gradShift, gradResidual;
    if (ctx->needs_input_grad(0)) {
      if (strategy == PaceLinearStrategy::PerRowWeight) {
        gradInput = at::empty({rows, tokens, in}, x3.options());
        perRowProducts(gradInput, dy2.view({rows, tokens, out}), weight, deltaWeight, multiplier,
                       /*transposed=*/false);
      } else {
        if (!stackedGrad.defined()) stackedGrad = at::cat({dy2, scaled2}, 1);
        gradInput = at::mm(stackedGrad, at::cat({weight, deltaWeight}, 0));
      }
      gradInput = gradInput.view(inputShape);
    }
    if (ctx->needs_input_grad(1)) gradWeight = at::mm(dy2.t(), x2);
    if (ctx->needs_input_grad(2)) gradBias = dy2.sum(0);
    if (ctx->needs_input_grad(3)) gradDelta = at::mm(scaled2.t(), x2);
    if (ctx->needs_input_grad(4)) gradShift = scaled2.sum(0);
    if (kind == EpilogueKind::Residual && ctx->needs_input_grad(6)) gradResidual = gradOutputs[0];
    return {gradInput,    gradWeight,   gradBias,     gradDelta,    gradShift,
            at::Tensor(), gradResidual, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor unfusedPaceLinear(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                             const at::Tensor& deltaWeight, const at::Tensor& shift, const at::Tensor& multiplier) {
  std::vector<int64_t> zShape(input.dim(), 1);
  zShape.front() = multiplier.size(0);
  zShape.back() = multiplier.size(1);
  return at::linear(input, weight, bias) + at::linear(input, deltaWeight, shift) * multiplier.view(zShape);
}

std::atomic<PaceLinearStrategy> processStrategy{PaceLinearStrategy::Auto};

}  // namespace

void setPaceLinearStrategy(PaceLinearStrategy strategy) { processStrategy.store(strategy); }
PaceLinearStrategy paceLinearStrategy() { return processStrategy.load(); }

PaceLinearStrategy choosePaceLinearStrategy(int64_t tokensPerRow, int64_t inFeatures, int64_t outFeatures,
                                            c10::DeviceType device) {
  // On a GPU one product against [W0; ΔW] with the element-wise work in one kernel wins: building a weight
  // per row would move more bytes than the saved arithmetic is worth at the tensor cores' rate.
  if (device != c10::DeviceType::CPU) return PaceLinearStrategy::StackedWeight;
  // Measured with bench/native/pace_linear_bench.cpp (bench/RESULTS.md, "The fused PACE linear's
  // formulations"): per-row weights win from about 32 tokens per row (ViT's 197, Swin's 49-token windows),
  // break even near 16 and lose below, where building each row's weight costs more than the GEMM work it
  // saves. The stacked weight never beat the two linears on the CPU.
  (void)inFeatures;
  (void)outFeatures;
  return tokensPerRow >= 32 ? PaceLinearStrategy::PerRowWeight : PaceLinearStrategy::Unfused;
}

at::Tensor paceLinear(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      const at::Tensor& deltaWeight, const at::Tensor& shift, const at::Tensor& multiplier,
                      PaceLinearStrategy strategy, const models::LinearEpilogue& epilogue) {
  TORCH_CHECK(input.dim() >= 2, "paceLinear: the input needs a row axis and a feature axis");
  const int64_t rows = input.size(0), in = input.size(-1), out = weight.size(0);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == in, "paceLinear: weight must be [out, ", in, "]");
  TORCH_CHECK(deltaWeight.defined() && deltaWeight.sizes() == weight.sizes(),
              "paceLinear: deltaWeight must have the weight's shape");
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out), "paceLinear: bias must be [", out, "]");
  TORCH_CHECK(!shift.defined() || (shift.dim() == 1 && shift.size(0) == out), "paceLinear: shift must be [", out, "]");
  TORCH_CHECK(multiplier.dim() == 2 && multiplier.size(0) == rows && multiplier.size(1) == out,
              "paceLinear: multiplier must be [", rows, ", ", out, "]");
  TORCH_CHECK(!multiplier.requires_grad(), "paceLinear: the noise multiplier takes no gradient");
  std::vector<int64_t> outShape = input.sizes().vec();
  outShape.back() = out;
  const at::Tensor& residual = epilogue.residual();
  TORCH_CHECK(!residual.defined() || residual.sizes() == at::IntArrayRef(outShape),
              "paceLinear: the residual must have the output's shape");
  if (strategy == PaceLinearStrategy::Auto) strategy = paceLinearStrategy();
  if (strategy == PaceLinearStrategy::Auto) {
    const int64_t tokens = rows == 0 ? 0 : input.numel() / (rows * in);
    strategy = choosePaceLinearStrategy(tokens, in, out, input.device().type());
  }
  // Per-row weights are built by host loops over the rows: a CPU formulation. Asked for elsewhere (a process-wide
  // setting, with models on both), the GPU's own formulation serves: the results agree up to rounding.
  if (strategy == PaceLinearStrategy::PerRowWeight && !input.is_cpu()) strategy = PaceLinearStrategy::StackedWeight;
  if (strategy == PaceLinearStrategy::Unfused || input.numel() == 0)
    return epilogue.apply(unfusedPaceLinear(input, weight, bias, deltaWeight, shift, multiplier));
  // Under autocast the fused op computes in the autocast dtype, as the two linears it replaces would; its
  // inputs are cast here (gradients flow back through the casts) and autocast stays off inside.
  const auto device = input.device().type();
  const std::optional<at::ScalarType> cast = autocastDtype(device);
  const at::ScalarType compute = cast && input.is_floating_point() ? *cast : input.scalar_type();
  const auto prepared = [&](const at::Tensor& t) {
    // libtorch 1.13's custom functions take no undefined inputs: an absent bias or shift is a constant zero.
    return t.defined() ? t.to(compute) : at::zeros({out}, weight.options().dtype(compute));
  };
  const at::Tensor x = input.to(compute);
  const bool epilogueKernels = strategy == PaceLinearStrategy::StackedWeight && paceEpilogueRuns(x);
  // The epilogue kernels read the noise in their accumulator dtype; the other formulations in the compute dtype.
  const at::Tensor z = multiplier.to(epilogueKernels ? epilogueAccumulator(compute) : compute);
  const bool fuseEpilogue = epilogueKernels && !epilogue.none() && fusedEpilogues() &&
                            (!residual.defined() || (residual.scalar_type() == epilogueAccumulator(compute) &&
                                                     residual.device() == x.device()));
  const at::Tensor none = at::empty({0}, x.options());
  const EpilogueKind kind =
      !fuseEpilogue ? EpilogueKind::Plain : (epilogue.isGelu() ? EpilogueKind::Gelu : EpilogueKind::Residual);
  // Fused, stochastic depth's scale is drawn here, in the dtype the unfused branch would have had (so with the same
  // draws); unfused, apply() draws it below.
  const at::Tensor rowScale = fuseEpilogue ? epilogue.rowScale(rows, x.options()) : at::Tensor();
  at::Tensor y;
  {
    AutocastOff autocastOff(device);
    y = PaceLinearFunction::apply(x, weight.to(compute), prepared(bias), deltaWeight.to(compute), prepared(shift), z,
                                  kind == EpilogueKind::Residual ? residual : none,
                                  rowScale.defined() ? rowScale : none, static_cast<int64_t>(strategy),
                                  static_cast<int64_t>(kind));
  }
  return fuseEpilogue ? y : epilogue.apply(y);  // apply() under the caller's autocast, as after a plain linear
}

}  // namespace pace::peft
