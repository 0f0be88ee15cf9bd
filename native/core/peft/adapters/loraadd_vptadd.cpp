// Additive LoRA with VPT-add (one of the paper's adapter combinations): ΔW = down·up,
// c = W0·(prompt_down·prompt_up) + delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraAddVptAdd : public Adapter {
 public:
  LoraAddVptAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("loraadd_vptadd", rank), parts_(LowRankPromptParts::attach(linear, rank, DeltaBiasUse::Shift)) {
    if (!linear.bias.defined()) formerlyAbsent_ = "delta_b";
  }

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    AdapterTerms terms;
    terms.deltaWeight = parts_.lowRank.product();
    terms.shift = parts_.prompt.shift(linear.weight) + parts_.deltaBias;
    return terms;
  }

 private:
  LowRankPromptParts parts_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraAddVptAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraAddVptAdd>(linear, rank);
}

}  // namespace pace::peft
