#include "models/qkv_split.h"

#include <torch/csrc/autograd/custom_function.h>

namespace pace::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Whether dq, dk and dv sit in one buffer as [batch, tokens, 3, heads, headDim], so it is the packed gradient.
bool packedAlready(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv, int64_t tokens, int64_t dim) {
  if (!dq.defined() || !dk.defined() || !dv.defined()) return false;
  const int64_t headDim = dq.size(3);
  const std::array<int64_t, 4> strides = {tokens * 3 * dim, headDim, 3 * dim, 1};
  for (const at::Tensor* part : {&dq, &dk, &dv}) {
    if (part->scalar_type() != dq.scalar_type() || part->device() != dq.device() ||
        !part->storage().is_alias_of(dq.storage()) || part->strides() != at::IntArrayRef(strides)) {
      return false;
    }
  }
  return dk.storage_offset() == dq.storage_offset() + dim && dv.storage_offset() == dq.storage_offset() + 2 * dim;
}

struct QkvSplitFunction : public torch::autograd::Function<QkvSplitFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& qkv, int64_t heads) {
    ctx->saved_data["shape"] = qkv.sizes().vec();
    ctx->saved_data["heads"] = heads;
    const int64_t batch = qkv.size(0), tokens = qkv.size(1), dim = qkv.size(2) / 3;
    const std::vector<at::Tensor> parts =
        qkv.view({batch, tokens, 3, heads, dim / heads}).permute({2, 0, 3, 1, 4}).unbind(0);
    return {parts[0], parts[1], parts[2]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    return {packQkvGradients(grads[0], grads[1], grads[2], shape, ctx->saved_data["heads"].toInt()), at::Tensor()};
  }
};

}  // namespace

std::array<at::Tensor, 3> splitQkv(const at::Tensor& qkv, int64_t heads) {
  TORCH_CHECK(qkv.dim() == 3 && qkv.size(2) % (3 * heads) == 0, "splitQkv: qkv must be [batch, tokens, 3·", heads,
              "·headDim], got ", qkv.sizes());
  // The views split the last dimension, which must be dense (a slice of a wider tensor is made so first).
  const variable_list parts = QkvSplitFunction::apply(qkv.stride(2) == 1 ? qkv : qkv.contiguous(), heads);
  return {parts[0], parts[1], parts[2]};
}

at::Tensor packQkvGradients(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv, at::IntArrayRef qkvShape,
                            int64_t heads) {
  const int64_t batch = qkvShape[0], tokens = qkvShape[1], dim = qkvShape[2] / 3;
  if (packedAlready(dq, dk, dv, tokens, dim)) {
    return dq.as_strided({batch, tokens, 3 * dim}, {tokens * 3 * dim, 3 * dim, 1}, dq.storage_offset());
  }
  const at::Tensor& any = dq.defined() ? dq : dk.defined() ? dk : dv;
  TORCH_CHECK(any.defined(), "packQkvGradients: no gradient is defined");
  at::Tensor packed = at::empty({batch, tokens, 3, heads, dim / heads}, any.options());
  const std::array<const at::Tensor*, 3> parts = {&dq, &dk, &dv};
  for (int64_t i = 0; i < 3; ++i) {
    at::Tensor slot = packed.select(2, i);  // [batch, tokens, heads, headDim]
    const at::Tensor& part = *parts[static_cast<size_t>(i)];
    if (part.defined()) {
      slot.copy_(part.transpose(1, 2));
    } else {
      slot.zero_();
    }
  }
  return packed.view({batch, tokens, 3 * dim});
}

}  // namespace pace::models
