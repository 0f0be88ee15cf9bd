// Additive LoRA with VPT-add (one of the paper's adapter combinations): ΔW = down·up,
// c = W0·(prompt_down·prompt_up) + delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraAddVptAdd : public Adapter {
 public:
  LoraAddVptAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("loraadd_vptadd", rank),
        lowRank_(LowRankPair::attach(linear, rank)),
        deltaBias_(attachDeltaBias(linear)),
        prompt_(PromptPair::attach(linear, rank)) {}

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    AdapterTerms terms;
    terms.deltaWeight = lowRank_.product();
    terms.shift = prompt_.shift(linear.weight);
    if (deltaBias_.defined()) terms.shift = addToShift(terms.shift, deltaBias_);
    return terms;
  }

 private:
  LowRankPair lowRank_;
  at::Tensor deltaBias_;
  PromptPair prompt_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraAddVptAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraAddVptAdd>(linear, rank);
}

}  // namespace pace::peft
