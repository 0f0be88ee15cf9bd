#pragma once
// The per-element arithmetic of the fused PACE linear's epilogues: one output element (forward) or one gradient
// element (backward) at flat index i of a [rows, out] matrix. The CUDA kernels (pace_epilogue.cu) and their CPU
// loops (cpu/pace_epilogue_cpu.cpp) both call these, so the CPU tests run the arithmetic the GPU runs. Plain
// C++/CUDA: raw pointers, no libtorch.
//
// Forward, with S = X·[W0; ΔW]ᵀ ([rows, 2·out]) and g = row / tokensPerRow (the tokens of one sample, or one Swin
// window, share a noise row):
//   h = S[r, o] + b[o] + z[g, o] · (S[r, out + o] + c[o])
//   Plain:    out = h
//   Gelu:     out = gelu(h) (exact, erf), and h is kept for the backward
//   Residual: out = residual + s[g] · h   (s: stochastic depth's per-sample scale; out in the accumulator type)
// Backward writes G = [dH, z ⊙ dH] ([rows, 2·out]), so that dX = G·[W0; ΔW] is one GEMM and dΔW = (z ⊙ dH)ᵀ·X,
// with dH = dOut (Plain), dOut · gelu'(h) (Gelu) or s[g] · dOut (Residual; the residual's own gradient is dOut).
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PACE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PACE_HOST_DEVICE inline
#endif

namespace pace::kernels {

enum class EpilogueKind : int32_t { Plain = 0, Gelu = 1, Residual = 2 };

PACE_HOST_DEVICE float erfOf(float x) { return erff(x); }
PACE_HOST_DEVICE double erfOf(double x) { return erf(x); }
PACE_HOST_DEVICE float expOf(float x) { return expf(x); }
PACE_HOST_DEVICE double expOf(double x) { return exp(x); }

// GELU with the exact (erf) form, as torch's default GELU and timm's Mlp.
template <typename Acc>
PACE_HOST_DEVICE Acc gelu(Acc h) {
  return Acc(0.5) * h * (Acc(1) + erfOf(h * Acc(0.70710678118654752440)));
}

// d gelu / dh = Φ(h) + h·φ(h).
template <typename Acc>
PACE_HOST_DEVICE Acc geluDerivative(Acc h) {
  const Acc cdf = Acc(0.5) * (Acc(1) + erfOf(h * Acc(0.70710678118654752440)));
  const Acc pdf = expOf(Acc(-0.5) * h * h) * Acc(0.39894228040143267794);  // 1/√(2π)
  return cdf + h * pdf;
}

// T: the storage type of the products, bias, shift and output (float, bfloat16, double); Acc: the arithmetic
// (float for float and bfloat16, double for double), also the type of the noise, the per-sample scale and the
// residual stream.
template <typename T, typename Acc>
struct EpilogueForward {
  const T* stacked;     // [rows, 2·out]
  const T* bias;        // [out] or null (0)
  const T* shift;       // [out] or null (0)
  const Acc* noise;     // [rows / tokensPerRow, out] or null (1)
  const Acc* rowScale;  // Residual: [rows / tokensPerRow] or null (1)
  const Acc* residual;  // Residual: [rows, out]
  T* out;               // Plain, Gelu: [rows, out]
  T* preActivation;     // Gelu: [rows, out], h as the backward reads it
  Acc* residualOut;     // Residual: [rows, out]
  int64_t outFeatures;
  int64_t tokensPerRow;
  EpilogueKind kind;

  PACE_HOST_DEVICE void operator()(int64_t i) const {
    const int64_t row = i / outFeatures;
    const int64_t channel = i - row * outFeatures;
    const int64_t group = row / tokensPerRow;
    const T* source = stacked + row * 2 * outFeatures;
    Acc frozen = static_cast<Acc>(source[channel]);
    Acc adapter = static_cast<Acc>(source[outFeatures + channel]);
    if (bias) frozen += static_cast<Acc>(bias[channel]);
    if (shift) adapter += static_cast<Acc>(shift[channel]);
    const Acc z = noise ? noise[group * outFeatures + channel] : Acc(1);
    const Acc h = frozen + z * adapter;
    if (kind == EpilogueKind::Residual) {
      const Acc scaled = rowScale ? h * rowScale[group] : h;
      residualOut[i] = residual[i] + scaled;
    } else if (kind == EpilogueKind::Gelu) {
      const T stored = static_cast<T>(h);
      preActivation[i] = stored;
      out[i] = static_cast<T>(gelu(h));
    } else {
      out[i] = static_cast<T>(h);
    }
  }
};

template <typename T, typename Acc>
struct EpilogueBackward {
  const T* gradOut;         // Plain, Gelu: [rows, out]
  const Acc* residualGrad;  // Residual: the gradient of the (accumulator-typed) output, [rows, out]
  const T* preActivation;   // Gelu: h from the forward
  const Acc* noise;         // as in the forward
  const Acc* rowScale;      // Residual: as in the forward
  T* stackedGrad;           // [rows, 2·out]
  int64_t outFeatures;
  int64_t tokensPerRow;
  EpilogueKind kind;

  PACE_HOST_DEVICE void operator()(int64_t i) const {
    const int64_t row = i / outFeatures;
    const int64_t channel = i - row * outFeatures;
    const int64_t group = row / tokensPerRow;
    Acc grad;
    if (kind == EpilogueKind::Residual) {
      grad = residualGrad[i];
      if (rowScale) grad *= rowScale[group];
    } else {
      grad = static_cast<Acc>(gradOut[i]);
      if (kind == EpilogueKind::Gelu) grad *= geluDerivative(static_cast<Acc>(preActivation[i]));
    }
    const Acc z = noise ? noise[group * outFeatures + channel] : Acc(1);
    T* target = stackedGrad + row * 2 * outFeatures;
    target[channel] = static_cast<T>(grad);
    target[outFeatures + channel] = static_cast<T>(z * grad);
  }
};

}  // namespace pace::kernels
