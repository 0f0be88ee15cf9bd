#pragma once
// Adapters on a frozen Linear (W0, b0), named as the PACE reference names them (`<linear>.delta_W_down`, ...).
// Each adapter's output has the form a(x) = x·ΔWᵀ + c, with
//   loramul_vptadd: ΔW = W0 ⊙ (down·up),  c = W0·(prompt_down·prompt_up) + b0 ⊙ delta_b
//   loramul:        ΔW = W0 ⊙ (down·up),  c = b0 ⊙ delta_b
//   loraadd:        ΔW = down·up,         c = delta_b
//   vptadd:         no ΔW,                c = W0·(prompt_down·prompt_up)
// and the adapted layer computes W0·x + b0 + z ⊙ a(x), z being PACE's noise (1 without it). Merging folds
// it into W0 + ΔW and b0 + c, so inference costs what the backbone costs.
#include <torch/nn/module.h>

#include <optional>
#include <string>

namespace pace::models {
class LinearImpl;
}

namespace pace::peft {

enum class AdapterType { LoraMulVptAdd, LoraMul, LoraAdd, VptAdd };

struct AdapterConfig {
  AdapterType type = AdapterType::LoraMulVptAdd;
  int64_t rank = 10;
};

AdapterType adapterTypeFromName(const std::string& name);  // "loramul_vptadd", ...; throws pace::Error
std::string adapterTypeName(AdapterType type);

// Registers the adapter's parameters on `linear` and initialises them as the reference: the down
// projections zero, the up projections Xavier-uniform, delta_b zero (so the adapter starts as a no-op).
// A linear without a bias gets no delta_b. Throws pace::Error for a rank < 1 or above min(in, out).
void attachAdapter(models::LinearImpl& linear, const AdapterConfig& config);

struct AdapterTerms {
  torch::Tensor deltaWeight;  // ΔW [out, in], undefined for vptadd
  torch::Tensor shift;        // c [out], undefined when the adapter has no per-channel term
};

AdapterTerms adapterTerms(const models::LinearImpl& linear);

// a(x) = x·ΔWᵀ + c, shaped like the linear's output.
torch::Tensor adapterOutput(const models::LinearImpl& linear, const torch::Tensor& input);

// The folded weight and bias (bias undefined only when the linear has neither bias nor shift).
std::pair<torch::Tensor, torch::Tensor> mergedWeightAndBias(const models::LinearImpl& linear);

}  // namespace pace::peft
