// The paper's adapter: ΔW = W0 ⊙ (down·up),  c = W0·(prompt_down·prompt_up) + b0 ⊙ delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraMulVptAdd : public Adapter {
 public:
  LoraMulVptAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("loramul_vptadd", rank), parts_(LowRankPromptParts::attach(linear, rank, DeltaBiasUse::ScalesBias)) {
    if (!parts_.deltaBias.defined()) referenceOnly_ = "delta_b";
  }

  bool scalesBias() const override { return true; }

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    AdapterTerms terms;
    terms.deltaWeight = linear.weight * parts_.lowRank.product();
    terms.shift = parts_.prompt.shift(linear.weight);
    if (parts_.deltaBias.defined()) terms.shift = addToShift(terms.shift, linear.bias * parts_.deltaBias);
    return terms;
  }

 private:
  LowRankPromptParts parts_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraMulVptAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraMulVptAdd>(linear, rank);
}

}  // namespace pace::peft
