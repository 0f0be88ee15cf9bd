// The paper's adapter: ΔW = W0 ⊙ (down·up),  c = W0·(prompt_down·prompt_up) + b0 ⊙ delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraMulVptAdd : public Adapter {
 public:
  LoraMulVptAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("loramul_vptadd", rank),
        lowRank_(LowRankPair::attach(linear, rank)),
        deltaBias_(attachDeltaBias(linear)),
        prompt_(PromptPair::attach(linear, rank)) {}

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    AdapterTerms terms;
    terms.deltaWeight = linear.weight * lowRank_.product();
    terms.shift = prompt_.shift(linear.weight);
    if (deltaBias_.defined()) terms.shift = addToShift(terms.shift, linear.bias * deltaBias_);
    return terms;
  }

 private:
  LowRankPair lowRank_;
  at::Tensor deltaBias_;
  PromptPair prompt_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraMulVptAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraMulVptAdd>(linear, rank);
}

}  // namespace pace::peft
