// Additive LoRA: ΔW = down·up,  c = delta_b.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class LoraAdd : public Adapter {
 public:
  LoraAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("loraadd", rank),
        lowRank_(LowRankPair::attach(linear, rank)),
        deltaBias_(attachDeltaBias(linear, DeltaBiasUse::Shift)) {
    if (!linear.bias.defined()) formerlyAbsent_ = "delta_b";
  }

  AdapterTerms terms(const models::LinearImpl&) const override { return {lowRank_.product(), deltaBias_}; }

 private:
  LowRankPair lowRank_;
  at::Tensor deltaBias_;
};

}  // namespace

std::shared_ptr<Adapter> createLoraAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<LoraAdd>(linear, rank);
}

}  // namespace pace::peft
