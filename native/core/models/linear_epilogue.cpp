#include "models/linear_epilogue.h"

#include "models/forward_context.h"

namespace pace::models {

LinearEpilogue LinearEpilogue::gelu() {
  LinearEpilogue epilogue;
  epilogue.gelu_ = true;
  return epilogue;
}

LinearEpilogue LinearEpilogue::residualAdd(at::Tensor residual, ForwardContext& context, double dropPathRate,
                                           bool training) {
  LinearEpilogue epilogue;
  epilogue.residual_ = std::move(residual);
  epilogue.context_ = &context;
  epilogue.dropPathRate_ = dropPathRate;
  epilogue.training_ = training;
  return epilogue;
}

at::Tensor LinearEpilogue::apply(const at::Tensor& output) const {
  if (gelu_) return at::gelu(output);
  if (residual_.defined()) return residual_ + context_->dropPath(output, dropPathRate_, training_);
  return output;
}

at::Tensor LinearEpilogue::rowScale(int64_t rows, const at::TensorOptions& options) const {
  if (!residual_.defined()) return {};
  return context_->dropPathScale(rows, dropPathRate_, training_, options);
}

}  // namespace pace::models
