#pragma once
// Whether element-wise work after a kernel is folded into it: the noisy linears' GELU and residual adds into
// their epilogue (peft/pace_linear.h), and the cast after a LayerNorm that feeds a product under autocast into
// the LayerNorm (tensor/layer_norm_to.h). On by default; PACE_FUSED_EPILOGUES=0 in the environment starts a
// process with it off, and benchmarks switch it to measure the fusions. Results agree up to rounding.
namespace pace {

void setFusedEpilogues(bool fused);
bool fusedEpilogues();

}  // namespace pace
