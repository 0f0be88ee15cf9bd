#pragma once
// Element-wise halves of the fused PACE linear on CUDA. The GEMMs around them run in cuBLAS (through
// libtorch); these kernels do the per-element work in one pass each. Plain CUDA: raw pointers and a
// stream, no libtorch.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace pace::kernels {

// Forward. `stacked` is X·[W0; ΔW]ᵀ, row-major [rows, 2·outFeatures]: columns [0, out) hold the frozen
// product, columns [out, 2·out) the adapter's. Row r takes noise row r / tokensPerRow (the tokens of one
// sample, or one Swin window, share a noise row, as in peft/pace_linear.h). Writes
//   out[r, o] = stacked[r, o] + bias[o] + noise[r / tokensPerRow, o] · (stacked[r, out + o] + shift[o])
// where `shift` gathers the adapter's per-channel terms (VPT prompt, scaled bias). `bias`, `shift` and
// `noise` may be null, meaning 0, 0 and 1.
template <typename T>
cudaError_t launchPaceEpilogueForward(const T* stacked, const T* bias, const T* shift, const float* noise, T* out,
                                      int64_t rows, int64_t outFeatures, int64_t tokensPerRow, cudaStream_t stream);

// Backward. From gradOut [rows, out] writes stackedGrad [rows, 2·out] = [dY, noise ⊙ dY], so that
// dX = stackedGrad · [W0; ΔW] is one GEMM and the adapter's weight gradient is (noise ⊙ dY)ᵀ X.
template <typename T>
cudaError_t launchPaceEpilogueBackward(const T* gradOut, const float* noise, T* stackedGrad, int64_t rows,
                                       int64_t outFeatures, int64_t tokensPerRow, cudaStream_t stream);

}  // namespace pace::kernels
