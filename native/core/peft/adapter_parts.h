#pragma once
// The parameter groups the adapter types are made of, registered on the adapted linear under the reference's
// names and initialised as it does. Each lives where and as the frozen weight does.
#include "models/layers.h"

namespace pace::peft {

// delta_W_down [out, r] (zeros) and delta_W_up [r, in] (Xavier-uniform): the low-rank product down·up.
struct LowRankPair {
  static LowRankPair attach(models::LinearImpl& linear, int64_t rank);
  at::Tensor product() const;
  at::Tensor down, up;
};

// delta_prompt_down [in, r] (zeros) and delta_prompt_up [r, 1] (Xavier-uniform): VPT-add's shift W0·(down·up).
struct PromptPair {
  static PromptPair attach(models::LinearImpl& linear, int64_t rank);
  at::Tensor shift(const at::Tensor& frozenWeight) const;
  at::Tensor down, up;
};

// What delta_b [out] (zeros) is to a type: a scale of the frozen bias (b0 ⊙ delta_b), attached only where the
// linear has a bias (undefined otherwise); or a shift of its own (LoRA-add's), attached on every linear.
enum class DeltaBiasUse { ScalesBias, Shift };
at::Tensor attachDeltaBias(models::LinearImpl& linear, DeltaBiasUse use);

// The parameters of the LoRA + VPT-add combinations, attached in the reference's order (low-rank pair, delta_b,
// prompt pair), which fixes the order of their random initialisation.
struct LowRankPromptParts {
  static LowRankPromptParts attach(models::LinearImpl& linear, int64_t rank, DeltaBiasUse use);
  LowRankPair lowRank;
  at::Tensor deltaBias;  // undefined where it scales a bias the linear lacks
  PromptPair prompt;
};

// Adds `term` to a shift that may still be undefined.
at::Tensor addToShift(const at::Tensor& shift, const at::Tensor& term);

}  // namespace pace::peft
