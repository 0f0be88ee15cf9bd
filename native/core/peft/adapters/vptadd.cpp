// VPT-add alone: no ΔW,  c = W0·(prompt_down·prompt_up), the same shift for every token.
#include "peft/adapter.h"
#include "peft/adapter_parts.h"

namespace pace::peft {

namespace {

class VptAdd : public Adapter {
 public:
  VptAdd(models::LinearImpl& linear, int64_t rank)
      : Adapter("vptadd", rank), prompt_(PromptPair::attach(linear, rank)) {}

  AdapterTerms terms(const models::LinearImpl& linear) const override {
    return {at::Tensor(), prompt_.shift(linear.weight)};
  }

 private:
  PromptPair prompt_;
};

}  // namespace

std::shared_ptr<Adapter> createVptAdd(models::LinearImpl& linear, int64_t rank) {
  return std::make_shared<VptAdd>(linear, rank);
}

}  // namespace pace::peft
