#include "models/window_order.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace pace::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct PermuteTokensFunction : public torch::autograd::Function<PermuteTokensFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& order,
                            const at::Tensor& inverse) {
    ctx->saved_data["inverse"] = inverse;
    return x.index_select(1, order);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor inverse = ctx->saved_data["inverse"].toTensor();
    return {grads[0].index_select(1, inverse), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

torch::Tensor shiftedWindowOrder(int64_t height, int64_t width, int64_t window, int64_t shift) {
  TORCH_CHECK(window > 0 && height % window == 0 && width % window == 0, "shifted windows: a ", height, "x", width,
              " map does not divide into ", window, "x", window, " windows");
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(height * width));
  for (int64_t windowRow = 0; windowRow < height / window; ++windowRow) {
    for (int64_t windowColumn = 0; windowColumn < width / window; ++windowColumn) {
      for (int64_t i = 0; i < window; ++i) {
        for (int64_t j = 0; j < window; ++j) {
          const int64_t row = (windowRow * window + i + shift) % height;
          const int64_t column = (windowColumn * window + j + shift) % width;
          order.push_back(row * width + column);
        }
      }
    }
  }
  return torch::tensor(order, torch::kLong);
}

torch::Tensor inversePermutation(const torch::Tensor& order) {
  return torch::empty_like(order).scatter_(0, order, torch::arange(order.numel(), order.options()));
}

torch::Tensor permuteTokens(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == order.numel() && order.numel() == inverse.numel(),
              "permuteTokens: needs [batch, ", order.numel(), " tokens, channels], got ", x.sizes());
  return PermuteTokensFunction::apply(x, order, inverse);
}

}  // namespace pace::models
