#pragma once
// LayerNorm over the last axis that writes its output in a narrower type than it computes in: float32 statistics
// and arithmetic, the result rounded once to bf16, as the product after it reads it under autocast (instead of a
// float32 output and a separate cast). The per-element formulas are shared by the CUDA kernels (layer_norm.cu)
// and the CPU loops (cpu/layer_norm_cpu.cpp). Plain C++/CUDA: raw pointers, no libtorch.
//
// Forward per row of C features:  μ = Σx/C,  σ² = Σ(x − μ)²/C (two passes),  r = 1/√(σ² + ε),
//                                 y = (x − μ)·r·γ + β.
// Backward (γ and β frozen):      g = dy·γ,  x̂ = (x − μ)·r,  dx = r·(g − Σg/C − x̂·Σ(g·x̂)/C).
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PACE_LN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PACE_LN_HOST_DEVICE inline
#endif

namespace pace::kernels {

PACE_LN_HOST_DEVICE float reciprocalSqrt(float x) { return 1.0f / sqrtf(x); }
PACE_LN_HOST_DEVICE double reciprocalSqrt(double x) { return 1.0 / sqrt(x); }

// T: the output's storage type (and the incoming gradient's); Acc: the input's, the parameters' and the
// arithmetic's (float, or double for tests).
template <typename T, typename Acc>
struct LayerNormForward {
  const Acc* input;   // [rows, features]
  const Acc* weight;  // γ [features]
  const Acc* bias;    // β [features]
  T* output;          // [rows, features]
  Acc* mean;          // μ [rows], for the backward
  Acc* rstd;          // r [rows], for the backward
  int64_t features;
  Acc eps;

  PACE_LN_HOST_DEVICE T normalized(Acc x, Acc mu, Acc r, int64_t c) const {
    return static_cast<T>((x - mu) * r * weight[c] + bias[c]);
  }
};

template <typename T, typename Acc>
struct LayerNormBackward {
  const T* gradOutput;  // dy [rows, features]
  const Acc* input;     // x
  const Acc* weight;    // γ
  const Acc* mean;      // μ from the forward
  const Acc* rstd;      // r from the forward
  Acc* gradInput;       // dx [rows, features]
  int64_t features;

  PACE_LN_HOST_DEVICE Acc scaledGrad(int64_t row, int64_t c) const {
    return static_cast<Acc>(gradOutput[row * features + c]) * weight[c];
  }
  PACE_LN_HOST_DEVICE Acc normalizedInput(int64_t row, int64_t c) const {
    return (input[row * features + c] - mean[row]) * rstd[row];
  }
  // dx for feature c of `row`, from the row's Σg and Σ(g·x̂).
  PACE_LN_HOST_DEVICE Acc inputGrad(int64_t row, int64_t c, Acc sumGrad, Acc sumGradNormalized) const {
    const Acc count = static_cast<Acc>(features);
    return rstd[row] * (scaledGrad(row, c) - sumGrad / count - normalizedInput(row, c) * sumGradNormalized / count);
  }
};

}  // namespace pace::kernels
