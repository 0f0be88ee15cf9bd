// The CPU attention op (models/cpu_attention.h) and its GEMM (kernels/cpu/small_gemm.h) against float64
// products computed by ATen; the qkv split (models/qkv_split.h) against indexing the permuted projection.
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>
#include <string>

#include "check.h"
#include "cpu/small_gemm.h"
#include "models/cpu_attention.h"
#include "models/layers.h"
#include "models/qkv_split.h"

namespace pace::tests {
namespace {

using kernels::avx2KernelsAvailable;
using kernels::smallGemm;

void withoutAvx2TheOpNeverApplies() {
  skipUnless(!avx2KernelsAvailable(), "this CPU has AVX2 (the op applies here)");
  check(!models::cpuAttentionApplies(at::zeros({1, 4, 3, 1, 8}), {}), "no AVX2: the attention op must not apply");
}

void smallGemmMatchesFloat64() {
  skipUnless(avx2KernelsAvailable(), "no AVX2 on this CPU (the kernels are not used)");
  struct Shape {
    int64_t m, n, k;
  };
  at::manual_seed(7);
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 17, 5}, Shape{6, 16, 64}, Shape{197, 197, 64}, Shape{197, 64, 197},
                        Shape{49, 32, 49}, Shape{5, 3, 0}}) {
    for (const bool transposeA : {false, true}) {
      for (const bool transposeB : {false, true}) {
        const at::Tensor aStored = transposeA ? at::randn({s.k, s.m}) : at::randn({s.m, s.k});
        const at::Tensor bStored = transposeB ? at::randn({s.n, s.k}) : at::randn({s.k, s.n});
        const at::Tensor a = transposeA ? aStored.t() : aStored, b = transposeB ? bStored.t() : bStored;
        const int64_t ldc = s.n + 3;  // the columns past n must stay untouched
        at::Tensor c = at::full({s.m, ldc}, std::numeric_limits<float>::quiet_NaN());
        smallGemm(s.m, s.n, s.k, {a.data_ptr<float>(), a.stride(0), a.stride(1)},
                  {b.data_ptr<float>(), b.stride(0), b.stride(1)}, 0.5f, c.data_ptr<float>(), ldc);
        const at::Tensor expected = at::mm(a.to(at::kDouble), b.to(at::kDouble)) * 0.5;
        const std::string name = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
                                 (transposeA ? " Aᵀ" : "") + (transposeB ? " Bᵀ" : "");
        const double error = relativeError(c.narrow(1, 0, s.n), expected);
        check(error < 1e-5, name + ": relative error " + std::to_string(error));
        check(c.narrow(1, s.n, 3).isnan().all().item<bool>(), name + ": wrote past the last column");
      }
    }
  }
}

// softmax(q·kᵀ/√d + mask)·v by ATen's products, as the explicit path computes it.
at::Tensor explicitAttention(const at::Tensor& qkv, const at::Tensor& mask) {
  const int64_t batch = qkv.size(0), tokens = qkv.size(1), heads = qkv.size(3), headDim = qkv.size(4);
  const at::Tensor parts = qkv.permute({2, 0, 3, 1, 4});
  at::Tensor scores = at::matmul(parts[0], parts[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(headDim));
  if (mask.defined()) scores = scores + mask;
  return at::matmul(at::softmax(scores, -1), parts[2]).transpose(1, 2).reshape({batch, tokens, heads * headDim});
}

void attentionMatchesFloat64() {
  skipUnless(avx2KernelsAvailable(), "no AVX2 on this CPU (the op is not used)");
  struct Case {
    int64_t batch, tokens, heads, headDim, maskBatch;  // maskBatch 0: no mask
    bool maskGrad;
  };
  at::manual_seed(11);
  // A mask of k < batch samples repeats every k (Swin's shift masks, one per window of an image).
  const auto perSample = [](const at::Tensor& mask, int64_t batch) {
    if (!mask.defined() || mask.size(0) == 1 || mask.size(0) == batch) return mask;
    const int64_t k = mask.size(0);
    return mask.unsqueeze(0)
        .expand({batch / k, k, mask.size(1), mask.size(2), mask.size(3)})
        .reshape({batch, mask.size(1), mask.size(2), mask.size(3)});
  };
  for (const Case c : {Case{2, 197, 6, 64, 0, false}, Case{3, 49, 3, 32, 3, true}, Case{4, 7, 2, 5, 1, true},
                       Case{2, 9, 2, 4, 1, false}, Case{1, 1, 1, 3, 0, false}, Case{6, 49, 3, 32, 3, true},
                       Case{8, 9, 2, 4, 4, false}}) {
    const std::string name = std::to_string(c.batch) + "×" + std::to_string(c.tokens) + " tokens, " +
                             std::to_string(c.heads) + " heads of " + std::to_string(c.headDim) +
                             (c.maskBatch ? ", mask batch " + std::to_string(c.maskBatch) : "");
    // Scores of a few units, as trained attention has: a flat softmax would hide errors in its gradient.
    const at::Tensor qkv64 = (at::randn({c.batch, c.tokens, 3, c.heads, c.headDim}, at::kDouble) * 1.5);
    // Swin's shift mask puts −100 where windows wrap: a third of the entries here.
    at::Tensor mask64;
    if (c.maskBatch) {
      mask64 = at::randn({c.maskBatch, c.heads, c.tokens, c.tokens}, at::kDouble);
      mask64.masked_fill_(at::rand(mask64.sizes(), at::kDouble) < 0.33, -100.0);
    }
    const at::Tensor weights = at::randn({c.batch, c.tokens, c.heads * c.headDim}, at::kDouble);

    const at::Tensor qkvExact = qkv64.clone().set_requires_grad(true);
    const at::Tensor maskExact = c.maskBatch ? mask64.clone().set_requires_grad(c.maskGrad) : at::Tensor();
    const at::Tensor exact = explicitAttention(qkvExact, perSample(maskExact, c.batch));
    std::vector<at::Tensor> exactInputs = {qkvExact};
    if (c.maskGrad) exactInputs.push_back(maskExact);
    const auto exactGrads = torch::autograd::grad({(exact * weights).sum()}, exactInputs);

    const at::Tensor qkv = qkv64.to(at::kFloat).set_requires_grad(true);
    const at::Tensor mask = c.maskBatch ? mask64.to(at::kFloat).set_requires_grad(c.maskGrad) : at::Tensor();
    check(models::cpuAttentionApplies(qkv, mask), name + ": the op should apply");
    check(!models::cpuAttentionApplies(qkv64, {}), name + ": float64 must take the explicit path");
    const at::Tensor out = models::cpuAttention(qkv, mask);
    std::vector<at::Tensor> inputs = {qkv};
    if (c.maskGrad) inputs.push_back(mask);
    const auto grads = torch::autograd::grad({(out * weights.to(at::kFloat)).sum()}, inputs);

    const double outputError = relativeError(out, exact);
    check(outputError < 1e-5, name + ": output vs float64 " + std::to_string(outputError));
    for (size_t i = 0; i < grads.size(); ++i) {
      check(grads[i].sizes() == exactGrads[i].sizes(),
            name + ": gradient " + std::to_string(i) + " has the wrong shape");
      const double error = relativeError(grads[i], exactGrads[i]);
      check(error < 1e-4, name + ": gradient " + std::to_string(i) + " vs float64 " + std::to_string(error));
    }
  }
}

void qkvSplitMatchesIndexing() {
  const int64_t batch = 2, tokens = 5, heads = 3, headDim = 4, dim = heads * headDim;
  at::manual_seed(5);
  // A slice of a wider tensor too: its rows are not dense, as a projection's narrowed output would be.
  const at::Tensor wide = at::randn({batch, tokens, 3 * dim + 2}, at::kDouble);
  for (const at::Tensor& source : {at::randn({batch, tokens, 3 * dim}, at::kDouble), wide.narrow(2, 1, 3 * dim)}) {
    const std::vector<at::Tensor> weights = {at::randn({batch, heads, tokens, headDim}, at::kDouble),
                                             at::randn({batch, heads, tokens, headDim}, at::kDouble)};
    for (const bool withK : {true, false}) {  // without k: its gradient is undefined and counts as zeros
      const std::string name = std::string(source.is_contiguous() ? "dense" : "sliced") + (withK ? "" : ", no k");
      const at::Tensor indexed = source.detach().clone().set_requires_grad(true);
      const at::Tensor parts = indexed.reshape({batch, tokens, 3, heads, headDim}).permute({2, 0, 3, 1, 4});
      at::Tensor expectedLoss = (parts[0] * weights[0]).sum() + (parts[2] * parts[2]).sum();
      if (withK) expectedLoss = expectedLoss + (parts[1] * weights[1]).sum();
      const at::Tensor expected = torch::autograd::grad({expectedLoss}, {indexed})[0];

      const at::Tensor split = source.detach().clone().set_requires_grad(true);
      const auto [q, k, v] = models::splitQkv(split.narrow(2, 0, 3 * dim), heads);
      check(at::equal(q, parts[0]) && at::equal(k, parts[1]) && at::equal(v, parts[2]), name + ": views differ");
      check(q.data_ptr() == split.data_ptr(), name + ": q is not a view of the projection");
      at::Tensor loss = (q * weights[0]).sum() + (v * v).sum();
      if (withK) loss = loss + (k * weights[1]).sum();
      const at::Tensor actual = torch::autograd::grad({loss}, {split})[0];
      check(at::equal(actual, expected), name + ": gradient differs from indexing's by " +
                                             std::to_string((actual - expected).abs().max().item<double>()));
    }
  }
}

void repeatingMaskOnTheLibtorchPath() {
  // float64 takes libtorch's path (SDPA on 2.x, explicit products on 1.13), which needs a mask per sample.
  const int64_t batch = 6, tokens = 9, heads = 2, headDim = 4, period = 3;
  at::manual_seed(13);
  const at::Tensor qkv = at::randn({batch, tokens, 3 * heads * headDim}, at::kDouble).set_requires_grad(true);
  const at::Tensor mask = at::randn({period, heads, tokens, tokens}, at::kDouble).set_requires_grad(true);
  const at::Tensor weights = at::randn({batch, tokens, heads * headDim}, at::kDouble);
  const at::Tensor out = models::qkvAttention(qkv, heads, mask);
  const auto grads = torch::autograd::grad({(out * weights).sum()}, {qkv, mask});
  const at::Tensor qkvExact = qkv.detach().clone().set_requires_grad(true);
  const at::Tensor maskExact = mask.detach().clone().set_requires_grad(true);
  const at::Tensor laidOut = maskExact.unsqueeze(0)
                                 .expand({batch / period, period, heads, tokens, tokens})
                                 .reshape({batch, heads, tokens, tokens});
  const at::Tensor exact = explicitAttention(qkvExact.view({batch, tokens, 3, heads, headDim}), laidOut);
  const auto exactGrads = torch::autograd::grad({(exact * weights).sum()}, {qkvExact, maskExact});
  check(relativeError(out, exact) < 1e-12, "output differs from the mask laid out per sample");
  check(relativeError(grads[0], exactGrads[0]) < 1e-12, "qkv gradient differs");
  check(relativeError(grads[1], exactGrads[1]) < 1e-12, "mask gradient differs (summed over its repeats)");
}

void packedQkvGradientsAreTakenAsTheyAre() {
  const int64_t batch = 2, tokens = 7, heads = 2, headDim = 8, dim = heads * headDim;
  const std::vector<int64_t> shape = {batch, tokens, 3 * dim};
  const at::Tensor buffer = at::randn(shape);
  const std::vector<at::Tensor> views =
      buffer.view({batch, tokens, 3, heads, headDim}).permute({2, 0, 3, 1, 4}).unbind(0);
  const at::Tensor packed = models::packQkvGradients(views[0], views[1], views[2], shape, heads);
  check(packed.data_ptr() == buffer.data_ptr() && at::equal(packed, buffer), "packed views must come back as is");
  const at::Tensor copied =
      models::packQkvGradients(views[0].contiguous(), views[1].contiguous(), views[2].contiguous(), shape, heads);
  check(copied.data_ptr() != buffer.data_ptr() && at::equal(copied, buffer), "separate gradients must be packed");
  // Views of one buffer in another order are not the packed layout: copied, in the right places.
  const at::Tensor swapped = models::packQkvGradients(views[1], views[0], views[2], shape, heads);
  check(swapped.data_ptr() != buffer.data_ptr(), "views in another order must be copied");
  check(at::equal(swapped.narrow(2, 0, dim), buffer.narrow(2, dim, dim)) &&
            at::equal(swapped.narrow(2, dim, dim), buffer.narrow(2, 0, dim)),
        "views in another order must be packed as given");
}

}  // namespace

TestList cpuAttentionTests() {
  return {
      {"without AVX2 the CPU attention op never applies", withoutAvx2TheOpNeverApplies},
      {"small GEMM matches float64 products on odd shapes and strides", smallGemmMatchesFloat64},
      {"CPU attention matches the explicit products in float64 (output, qkv and mask gradients)",
       attentionMatchesFloat64},
      {"the qkv split's views and gradient equal indexing the permuted projection", qkvSplitMatchesIndexing},
      {"a mask repeating every k samples (Swin's windows) on libtorch's attention path",
       repeatingMaskOnTheLibtorchPath},
      {"q, k and v gradients already packed as the projection are returned without a copy",
       packedQkvGradientsAreTakenAsTheyAre},
  };
}

}  // namespace pace::tests
