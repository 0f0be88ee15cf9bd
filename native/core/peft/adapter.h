#pragma once
// Adapters on a frozen Linear (W0, b0), their parameters named as the PACE reference names them
// (`<linear>.delta_W_down`, ...). Every adapter's output has the form a(x) = x·ΔWᵀ + c (its "terms"); the
// adapted layer computes W0·x + b0 + z ⊙ a(x), z being PACE's noise (1 without it), and merging folds it into
// W0 + ΔW and b0 + c so inference costs what the backbone costs. The types live in peft/adapters/, one file
// each, and are found by name through peft/adapter_registry.cpp.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/layers.h"

namespace pace::peft {

struct AdapterTerms {
  at::Tensor deltaWeight;  // ΔW [out, in], undefined when the type has none
  at::Tensor shift;        // c [out], undefined when the type has no per-channel term
};

// What every adapter type shares: how its terms enter the forward (PACE's noise, merging) and the fold.
class Adapter : public models::LinearAdapter {
 public:
  Adapter(std::string typeName, int64_t rank) : typeName_(std::move(typeName)), rank_(rank) {}
  std::string typeName() const override { return typeName_; }
  int64_t rank() const override { return rank_; }

  // ΔW and c from the adapter's parameters and the frozen layer.
  virtual AdapterTerms terms(const models::LinearImpl& linear) const = 0;

  at::Tensor forward(const models::LinearImpl& linear, const at::Tensor& input, models::ForwardContext& context,
                     const models::LinearEpilogue& epilogue) const override;
  std::pair<at::Tensor, at::Tensor> mergedWeightAndBias(const models::LinearImpl& linear) const override;

  // a(x) = x·ΔWᵀ + c, shaped like the linear's output.
  at::Tensor output(const models::LinearImpl& linear, const at::Tensor& input) const;

  // A parameter an adapter file may hold here though this adapter has none of that name: the reference creates it
  // and it has no effect on this linear (b0 ⊙ delta_b where there is no b0). Empty: none.
  const std::string& referenceOnlyParameter() const { return referenceOnly_; }
  // A parameter an adapter file may lack here: earlier versions did not create it (LoRA-add's delta_b on a linear
  // without a bias), and without it the adapter is what it was then (zero). Empty: none.
  const std::string& formerlyAbsentParameter() const { return formerlyAbsent_; }

 protected:
  std::string referenceOnly_;
  std::string formerlyAbsent_;

 private:
  std::string typeName_;
  int64_t rank_;
};

// Creates an adapter of `rank` on a linear: registers its parameters on the linear and initialises them as the
// reference does (down projections zero, up projections Xavier-uniform, delta_b zero: the adapter starts as a
// no-op). Called only after checkAdapterFits.
using AdapterFactory = std::shared_ptr<Adapter> (*)(models::LinearImpl& linear, int64_t rank);

// The registered type of this name; throws OptionError naming the known ones.
AdapterFactory adapterFactory(const std::string& type);
std::vector<std::string> adapterTypeNames();

// Throws unless an adapter of `rank` may go on `linear`: not adapted yet, 1 <= rank <= min(in, out).
void checkAdapterFits(const models::LinearImpl& linear, int64_t rank);

// Checks, creates and attaches an adapter of a registered type.
void attachAdapter(models::LinearImpl& linear, const std::string& type, int64_t rank);

}  // namespace pace::peft
