// Multiplicative LoRA: ΔW = W0 ⊙ (down·up),  c = b0 ⊙ delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraMul : public Adapter {
 public:
  LoraMul(models::LinearImpl& linear, int64_t rank)
      : Adapter("loramul", rank),
        lowRank_(LowRankPair::attach(linear, rank)),
        deltaBias_(attachDeltaBias(linear, DeltaBiasUse::ScalesBias)) {
    if (!deltaBias_.defined()) referenceOnly_ = "delta_b";
  }

  bool scalesBias() const override { return true; }

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    AdapterTerms terms;
    terms.deltaWeight = linear.weight * lowRank_.product();
    if (deltaBias_.defined()) terms.shift = linear.bias * deltaBias_;
    return terms;
  }

 private:
  LowRankPair lowRank_;
  at::Tensor deltaBias_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraMul(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraMul>(linear, rank);
}

}  // namespace pace::peft
