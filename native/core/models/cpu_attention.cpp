#include "models/cpu_attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "cpu/small_gemm.h"
#include "cpu/softmax_rows.h"
#include "system/dynamic_parallel.h"

namespace pace::models {

namespace {

using kernels::avx2KernelsAvailable;
using kernels::smallGemm;
using kernels::softmaxBackwardRows;
using kernels::softmaxRows;
using kernels::StridedMatrix;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The views of one sample's head inside contiguous [batch, tokens, 3, heads, headDim] (qkv and its gradient),
// [batch, tokens, heads, headDim] (the output and its gradient) and [batch, heads, tokens, tokens] (scores).
struct Layout {
  int64_t batch, tokens, heads, headDim;

  int64_t qkvRowStride() const { return 3 * heads * headDim; }
  int64_t qkvOffset(int64_t b, int64_t which, int64_t h) const {
    return b * tokens * qkvRowStride() + (which * heads + h) * headDim;
  }
  int64_t outRowStride() const { return heads * headDim; }
  int64_t outOffset(int64_t b, int64_t h) const { return b * tokens * outRowStride() + h * headDim; }
  int64_t scoresOffset(int64_t b, int64_t h) const { return (b * heads + h) * tokens * tokens; }

  StridedMatrix qkvPart(const float* qkv, int64_t b, int64_t which, int64_t h) const {
    return {qkv + qkvOffset(b, which, h), qkvRowStride(), 1};
  }
  StridedMatrix qkvPartTransposed(const float* qkv, int64_t b, int64_t which, int64_t h) const {
    return {qkv + qkvOffset(b, which, h), 1, qkvRowStride()};
  }
  StridedMatrix scores(const float* s, int64_t b, int64_t h) const { return {s + scoresOffset(b, h), tokens, 1}; }
  StridedMatrix scoresTransposed(const float* s, int64_t b, int64_t h) const {
    return {s + scoresOffset(b, h), 1, tokens};
  }
  StridedMatrix out(const float* o, int64_t b, int64_t h) const { return {o + outOffset(b, h), outRowStride(), 1}; }
};

Layout layoutOf(const at::Tensor& qkv) { return {qkv.size(0), qkv.size(1), qkv.size(3), qkv.size(4)}; }

// Runs body(b, h) for every sample and head, the heads shared among the threads.
template <typename Body>
void forEachHead(const Layout& layout, const Body& body) {
  forEachDynamic(layout.batch * layout.heads, [&](int64_t i) { body(i / layout.heads, i % layout.heads); });
}

// A per-thread scratch matrix of at least `size` floats (one head's scores or their gradient: fits in L2).
float* scratch(int64_t size) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(static_cast<size_t>(size));
  return buffer.data();
}

struct CpuAttentionFunction : public torch::autograd::Function<CpuAttentionFunction> {
  // `mask` is an empty tensor when absent (libtorch 1.13's custom functions take no undefined inputs).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& qkvInput, const at::Tensor& maskInput) {
    const at::Tensor qkv = qkvInput.contiguous();
    const Layout l = layoutOf(qkv);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(l.headDim)));
    const at::Tensor mask = maskInput.numel() == 0 ? at::Tensor() : maskInput.contiguous();
    const int64_t maskBatch = mask.defined() ? mask.size(0) : 0;
    at::Tensor probabilities = at::empty({l.batch, l.heads, l.tokens, l.tokens}, qkv.options());
    at::Tensor out = at::empty({l.batch, l.tokens, l.heads, l.headDim}, qkv.options());
    const float* q = qkv.data_ptr<float>();
    const float* m = mask.defined() ? mask.data_ptr<float>() : nullptr;
    float* p = probabilities.data_ptr<float>();
    float* o = out.data_ptr<float>();

    forEachHead(l, [&](int64_t b, int64_t h) {
      // P = softmax(scale·q·kᵀ + mask), then out = P·v, the head's P still in cache for the second product.
      float* head = p + l.scoresOffset(b, h);
      smallGemm(l.tokens, l.tokens, l.headDim, l.qkvPart(q, b, 0, h), l.qkvPartTransposed(q, b, 1, h), scale, head,
                l.tokens);
      const float* add = m ? m + ((b % maskBatch) * l.heads + h) * l.tokens * l.tokens : nullptr;
      softmaxRows(head, add, l.tokens, l.tokens, l.tokens);
      smallGemm(l.tokens, l.headDim, l.tokens, l.scores(p, b, h), l.qkvPart(q, b, 2, h), 1.f, o + l.outOffset(b, h),
                l.outRowStride());
    });

    ctx->save_for_backward({qkv, probabilities});
    ctx->saved_data["maskBatch"] = maskBatch;
    return out.view({l.batch, l.tokens, l.heads * l.headDim});
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradOutputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& qkv = saved[0];
    const at::Tensor& probabilities = saved[1];
    const Layout l = layoutOf(qkv);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(l.headDim)));
    const bool maskGrad = ctx->needs_input_grad(1);
    const at::Tensor gradOut = gradOutputs[0].contiguous();
    at::Tensor gradQkv = at::empty_like(qkv);  // every element is written below
    // The mask is added to the scaled scores: its gradient is theirs (summed over the samples that share a mask).
    at::Tensor gradScores = maskGrad ? at::empty_like(probabilities) : at::Tensor();
    const float* q = qkv.data_ptr<float>();
    const float* p = probabilities.data_ptr<float>();
    const float* dO = gradOut.data_ptr<float>();
    float* dQkv = gradQkv.data_ptr<float>();
    float* dScoresAll = maskGrad ? gradScores.data_ptr<float>() : nullptr;

    forEachHead(l, [&](int64_t b, int64_t h) {
      // dv = Pᵀ·dO; dS = softmax'(dP) with dP = dO·vᵀ (in scratch); dq = scale·dS·k, dk = scale·dSᵀ·q.
      smallGemm(l.tokens, l.headDim, l.tokens, l.scoresTransposed(p, b, h), l.out(dO, b, h), 1.f,
                dQkv + l.qkvOffset(b, 2, h), l.qkvRowStride());
      float* dS = dScoresAll ? dScoresAll + l.scoresOffset(b, h) : scratch(l.tokens * l.tokens);
      smallGemm(l.tokens, l.tokens, l.headDim, l.out(dO, b, h), l.qkvPartTransposed(q, b, 2, h), 1.f, dS, l.tokens);
      softmaxBackwardRows(p + l.scoresOffset(b, h), dS, l.tokens, l.tokens, l.tokens);
      const StridedMatrix dSMatrix{dS, l.tokens, 1}, dSTransposed{dS, 1, l.tokens};
      smallGemm(l.tokens, l.headDim, l.tokens, dSMatrix, l.qkvPart(q, b, 1, h), scale, dQkv + l.qkvOffset(b, 0, h),
                l.qkvRowStride());
      smallGemm(l.tokens, l.headDim, l.tokens, dSTransposed, l.qkvPart(q, b, 0, h), scale, dQkv + l.qkvOffset(b, 1, h),
                l.qkvRowStride());
    });
    at::Tensor gradMask;
    if (maskGrad) {
      const int64_t maskBatch = ctx->saved_data["maskBatch"].toInt();
      gradMask = maskBatch == l.batch
                     ? gradScores
                     : gradScores.view({l.batch / maskBatch, maskBatch, l.heads, l.tokens, l.tokens}).sum(0);
    }
    return {gradQkv, gradMask};
  }
};

}  // namespace

bool cpuAttentionApplies(const at::Tensor& qkv, const at::Tensor& mask) {
  if (!avx2KernelsAvailable() || qkv.dim() != 5 || qkv.size(2) != 3 || !qkv.device().is_cpu() ||
      qkv.scalar_type() != at::kFloat)
    return false;
  if (!mask.defined()) return true;
  return mask.device().is_cpu() && mask.scalar_type() == at::kFloat && mask.dim() == 4 && mask.size(0) >= 1 &&
         qkv.size(0) % mask.size(0) == 0 && mask.size(1) == qkv.size(3) && mask.size(2) == qkv.size(1) &&
         mask.size(3) == qkv.size(1);
}

at::Tensor cpuAttention(const at::Tensor& qkv, const at::Tensor& mask) {
  TORCH_CHECK(cpuAttentionApplies(qkv, mask), "cpuAttention: needs float32 CPU qkv [batch, tokens, 3, heads, headDim]",
              " with an AVX2 CPU, and a [k, heads, tokens, tokens] mask, k dividing the batch");
  return CpuAttentionFunction::apply(qkv, mask.defined() ? mask : at::empty({0}, qkv.options()));
}

}  // namespace pace::models
