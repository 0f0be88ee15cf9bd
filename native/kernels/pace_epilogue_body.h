#pragma once
// The per-element arithmetic of the fused PACE linear's epilogues: output elements (forward) or gradient elements
// (backward) of a [rows, out] matrix, a span of one row at a time. The CUDA kernels (pace_epilogue.cu) and their CPU
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

// V consecutive elements of one row, moved as one aligned pack: 16-byte loads and stores on a GPU instead of V
// narrow ones (the epilogues only move bytes, so their speed is their memory traffic's).
template <typename E, int V>
struct alignas(sizeof(E) * V) Pack {
  E lane[V];
};

template <int V, typename E>
PACE_HOST_DEVICE Pack<E, V> load(const E* at) {
  return *reinterpret_cast<const Pack<E, V>*>(at);
}

template <int V, typename E>
PACE_HOST_DEVICE void store(E* at, const Pack<E, V>& pack) {
  *reinterpret_cast<Pack<E, V>*>(at) = pack;
}

// Whether every pointer given suits packs of V elements of its type: the pointer aligned to the pack.
template <int V>
inline bool packAligned() {
  return true;
}
template <int V, typename E, typename... Rest>
inline bool packAligned(const E* pointer, const Rest*... rest) {
  return reinterpret_cast<uintptr_t>(pointer) % (sizeof(E) * V) == 0 && packAligned<V>(rest...);
}

// T: the storage type of the products, bias, shift and output (float, bfloat16, double); Acc: the arithmetic
// (float for float and bfloat16, double for double), also the type of the noise, the per-sample scale and the
// residual stream. span<V>(first) computes elements [first, first + V) of one row: V divides outFeatures, first is
// a multiple of V, and with V > 1 every pointer is pack-aligned (vectorizable<V>).
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

  template <int V>
  bool vectorizable() const {
    return outFeatures % V == 0 &&
           packAligned<V>(stacked, bias, shift, noise, residual, out, preActivation, residualOut);
  }

  template <int V>
  PACE_HOST_DEVICE void span(int64_t first) const {
    const int64_t row = first / outFeatures;
    const int64_t channel = first - row * outFeatures;
    const int64_t group = row / tokensPerRow;
    const T* source = stacked + row * 2 * outFeatures + channel;
    const Pack<T, V> frozen = load<V>(source), adapter = load<V>(source + outFeatures);
    Pack<T, V> b{}, c{};
    Pack<Acc, V> z{};
    if (bias) b = load<V>(bias + channel);
    if (shift) c = load<V>(shift + channel);
    if (noise) z = load<V>(noise + group * outFeatures + channel);
    Acc h[V];
    for (int k = 0; k < V; ++k) {
      const Acc f = static_cast<Acc>(frozen.lane[k]) + (bias ? static_cast<Acc>(b.lane[k]) : Acc(0));
      const Acc a = static_cast<Acc>(adapter.lane[k]) + (shift ? static_cast<Acc>(c.lane[k]) : Acc(0));
      h[k] = f + (noise ? z.lane[k] : Acc(1)) * a;
    }
    if (kind == EpilogueKind::Residual) {
      const Acc scale = rowScale ? rowScale[group] : Acc(1);
      Pack<Acc, V> result = load<V>(residual + first);
      for (int k = 0; k < V; ++k) result.lane[k] += rowScale ? h[k] * scale : h[k];
      store<V>(residualOut + first, result);
    } else if (kind == EpilogueKind::Gelu) {
      Pack<T, V> pre, result;
      for (int k = 0; k < V; ++k) {
        pre.lane[k] = static_cast<T>(h[k]);
        result.lane[k] = static_cast<T>(gelu(h[k]));
      }
      store<V>(preActivation + first, pre);
      store<V>(out + first, result);
    } else {
      Pack<T, V> result;
      for (int k = 0; k < V; ++k) result.lane[k] = static_cast<T>(h[k]);
      store<V>(out + first, result);
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

  template <int V>
  bool vectorizable() const {
    return outFeatures % V == 0 && packAligned<V>(gradOut, residualGrad, preActivation, noise, stackedGrad);
  }

  template <int V>
  PACE_HOST_DEVICE void span(int64_t first) const {
    const int64_t row = first / outFeatures;
    const int64_t channel = first - row * outFeatures;
    const int64_t group = row / tokensPerRow;
    Acc grad[V];
    if (kind == EpilogueKind::Residual) {
      const Pack<Acc, V> incoming = load<V>(residualGrad + first);
      const Acc scale = rowScale ? rowScale[group] : Acc(1);
      for (int k = 0; k < V; ++k) grad[k] = rowScale ? incoming.lane[k] * scale : incoming.lane[k];
    } else {
      const Pack<T, V> incoming = load<V>(gradOut + first);
      for (int k = 0; k < V; ++k) grad[k] = static_cast<Acc>(incoming.lane[k]);
      if (kind == EpilogueKind::Gelu) {
        const Pack<T, V> pre = load<V>(preActivation + first);
        for (int k = 0; k < V; ++k) grad[k] *= geluDerivative(static_cast<Acc>(pre.lane[k]));
      }
    }
    Pack<Acc, V> z{};
    if (noise) z = load<V>(noise + group * outFeatures + channel);
    Pack<T, V> plain, scaled;
    for (int k = 0; k < V; ++k) {
      plain.lane[k] = static_cast<T>(grad[k]);
      scaled.lane[k] = static_cast<T>((noise ? z.lane[k] : Acc(1)) * grad[k]);
    }
    T* target = stackedGrad + row * 2 * outFeatures + channel;
    store<V>(target, plain);
    store<V>(target + outFeatures, scaled);
  }
};

// The pack width for T: 16 bytes of it.
template <typename T>
constexpr int packWidth() {
  return static_cast<int>(16 / sizeof(T));
}

}  // namespace pace::kernels
