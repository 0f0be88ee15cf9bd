#pragma once
// The slot a Linear offers to an adapter (peft/adapter.h implements it). The backbone knows only this
// interface, so models/ never includes peft/.
#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "models/linear_epilogue.h"

namespace pace::models {

class LinearImpl;
class ForwardContext;

// Adapter parameters are registered on their linear as `delta_*` (the PACE reference's names): what tells them from
// the backbone's own.
inline bool isAdapterParameter(const std::string& name) { return name.find(".delta_") != std::string::npos; }

class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  // The adapter type's registry name ("loramul_vptadd", ...) and rank.
  virtual std::string typeName() const = 0;
  virtual int64_t rank() const = 0;
  // The adapted linear's output for `input` in this forward, `epilogue` applied: with the context's PACE noise in
  // training, merged into one GEMM otherwise.
  virtual at::Tensor forward(const LinearImpl& linear, const at::Tensor& input, ForwardContext& context,
                             const LinearEpilogue& epilogue) const = 0;
  // The folded weight and bias (bias undefined only when the linear has neither bias nor shift).
  virtual std::pair<at::Tensor, at::Tensor> mergedWeightAndBias(const LinearImpl& linear) const = 0;
  // Whether its terms scale the linear's bias (LoRA-mul's c = b0 ⊙ δb): built for the bias the linear had, or its
  // absence, it cannot follow a bias added or dropped later.
  virtual bool scalesBias() const { return false; }
};

}  // namespace pace::models
