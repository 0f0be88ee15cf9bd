// Achieved memory bandwidth of the fused PACE linear's epilogue kernels (native/kernels/pace_epilogue.cu) in
// bf16, in 16-byte packs and one element at a time, against a device-to-device copy of the same bytes: the share
// of the card's bandwidth they reach (they only move bytes, so that share is their speed). Shapes of ViT-B/16's
// PACE step at batch 64: 128 rows after the two copies, 197 tokens each; qkv (plain), proj and fc2 (residual add
// into float32), fc1 (GELU); and the LayerNorm that writes bf16 (native/kernels/layer_norm.cu) on the residual
// stream's [rows, 768] (its input counted once: the kernel's second and third reads of a row hit the cache).
// Built on a GPU machine only (cmake target pace_epilogue_bench; bench/device.sh).
//
// Usage: pace_epilogue_bench [iterations]   (default 50 per measurement, after 5 untimed)
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "layer_norm.h"
#include "pace_epilogue.h"

namespace {

using pace::kernels::EpilogueBackward;
using pace::kernels::EpilogueForward;
using pace::kernels::EpilogueKind;
using bf16 = __nv_bfloat16;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

void* deviceBuffer(size_t bytes) {
  void* pointer = nullptr;
  check(cudaMalloc(&pointer, bytes), "cudaMalloc");
  check(cudaMemset(pointer, 0x3c, bytes), "cudaMemset");  // finite values in bf16 and float32 alike
  return pointer;
}

// Milliseconds per call of `launch`, averaged over `iterations` after five untimed calls.
double millisecondsPerCall(const std::function<void()>& launch, int iterations, cudaStream_t stream) {
  for (int i = 0; i < 5; ++i) launch();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  check(cudaEventRecord(start, stream), "record");
  for (int i = 0; i < iterations; ++i) launch();
  check(cudaEventRecord(stop, stream), "record");
  check(cudaEventSynchronize(stop), "synchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  check(cudaGetLastError(), "kernel");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iterations;
}

struct Layer {
  const char* name;
  int64_t out;
  EpilogueKind kind;
};

const char* kindName(EpilogueKind kind) {
  return kind == EpilogueKind::Gelu ? "gelu" : kind == EpilogueKind::Residual ? "residual" : "plain";
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 50;
  if (iterations < 1) {
    std::fprintf(stderr, "usage: pace_epilogue_bench [iterations >= 1]\n");
    return 2;
  }
  cudaDeviceProp properties{};
  check(cudaGetDeviceProperties(&properties, 0), "device");
  const int64_t groups = 128, tokens = 197, rows = groups * tokens;
  const std::vector<Layer> layers = {{"qkv", 2304, EpilogueKind::Plain},
                                     {"proj", 768, EpilogueKind::Residual},
                                     {"fc1", 3072, EpilogueKind::Gelu},
                                     {"fc2", 768, EpilogueKind::Residual}};
  const int64_t widest = 3072;
  auto* stacked = static_cast<bf16*>(deviceBuffer(rows * 2 * widest * sizeof(bf16)));
  auto* out = static_cast<bf16*>(deviceBuffer(rows * widest * sizeof(bf16)));
  auto* pre = static_cast<bf16*>(deviceBuffer(rows * widest * sizeof(bf16)));
  auto* bias = static_cast<bf16*>(deviceBuffer(widest * sizeof(bf16)));
  auto* shift = static_cast<bf16*>(deviceBuffer(widest * sizeof(bf16)));
  auto* noise = static_cast<float*>(deviceBuffer(groups * widest * sizeof(float)));
  auto* scale = static_cast<float*>(deviceBuffer(groups * sizeof(float)));
  auto* residual = static_cast<float*>(deviceBuffer(rows * widest * sizeof(float)));
  auto* residualOut = static_cast<float*>(deviceBuffer(rows * widest * sizeof(float)));
  // The largest measurement moves rows·widest·8 bytes and a little more: copies of half of that each way.
  const size_t copyBytes = static_cast<size_t>(rows * widest) * 4 + (size_t(1) << 24);
  void* copySource = deviceBuffer(copyBytes);
  void* copyTarget = deviceBuffer(copyBytes);
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "stream");

  std::printf("%s, %lld rows (128 x 197 tokens), bf16, %d calls each\n", properties.name, static_cast<long long>(rows),
              iterations);
  std::printf("%-5s %-9s %-8s %10s %10s %10s %8s\n", "layer", "pass", "kind", "MB moved", "packs GB/s", "1-by-1 GB/s",
              "of copy");
  for (const Layer& layer : layers) {
    const int64_t o = layer.out, elements = rows * o;
    const bool residualKind = layer.kind == EpilogueKind::Residual;
    EpilogueForward<bf16, float> forward{stacked,
                                         bias,
                                         shift,
                                         noise,
                                         residualKind ? scale : nullptr,
                                         residualKind ? residual : nullptr,
                                         residualKind ? nullptr : out,
                                         layer.kind == EpilogueKind::Gelu ? pre : nullptr,
                                         residualKind ? residualOut : nullptr,
                                         o,
                                         tokens,
                                         layer.kind};
    EpilogueBackward<bf16, float> backward{residualKind ? nullptr : out,
                                           residualKind ? residual : nullptr,
                                           layer.kind == EpilogueKind::Gelu ? pre : nullptr,
                                           noise,
                                           residualKind ? scale : nullptr,
                                           stacked,
                                           o,
                                           tokens,
                                           layer.kind};
    const double small = static_cast<double>(groups * o * sizeof(float) + 2 * o * sizeof(bf16));
    const double forwardBytes =
        elements * (2.0 * sizeof(bf16)) + small +
        (residualKind ? elements * 2.0 * sizeof(float)
                      : elements * (layer.kind == EpilogueKind::Gelu ? 2.0 : 1.0) * sizeof(bf16));
    const double backwardBytes =
        elements * (2.0 * sizeof(bf16)) + groups * o * sizeof(float) +
        (residualKind ? elements * sizeof(float)
                      : elements * (layer.kind == EpilogueKind::Gelu ? 2.0 : 1.0) * sizeof(bf16));
    for (int pass = 0; pass < 2; ++pass) {
      const double bytes = pass == 0 ? forwardBytes : backwardBytes;
      const auto run = [&](bool packs) {
        return millisecondsPerCall(
            [&] {
              check(pass == 0 ? pace::kernels::launchEpilogueForward(forward, rows, stream, packs)
                              : pace::kernels::launchEpilogueBackward(backward, rows, stream, packs),
                    "launch");
            },
            iterations, stream);
      };
      const double packed = run(true), single = run(false);
      // The same bytes copied device to device (half read, half written) as the card's practical rate.
      const size_t half = std::min(static_cast<size_t>(bytes / 2), copyBytes);
      const double copy = millisecondsPerCall(
          [&] { check(cudaMemcpyAsync(copyTarget, copySource, half, cudaMemcpyDeviceToDevice, stream), "copy"); },
          iterations, stream);
      const auto rate = [&](double ms) { return bytes / (ms * 1e-3) / 1e9; };
      std::printf("%-5s %-9s %-8s %10.1f %10.0f %10.0f %7.0f%%\n", layer.name, pass == 0 ? "forward" : "backward",
                  kindName(layer.kind), bytes / 1e6, rate(packed), rate(single), 100.0 * copy / packed);
    }
  }
  // LayerNorm: float32 in, bf16 out (forward); bf16 gradient and float32 input in, float32 gradient out (backward).
  {
    const int64_t features = 768, elements = rows * features;
    auto* gamma = static_cast<float*>(deviceBuffer(features * sizeof(float)));
    auto* beta = static_cast<float*>(deviceBuffer(features * sizeof(float)));
    auto* mean = static_cast<float*>(deviceBuffer(rows * sizeof(float)));
    auto* rstd = static_cast<float*>(deviceBuffer(rows * sizeof(float)));
    const pace::kernels::LayerNormForward<bf16, float> forward{residual, gamma, beta, out, mean, rstd, features, 1e-6f};
    const pace::kernels::LayerNormBackward<bf16, float> backward{out,  residual,    gamma,   mean,
                                                                 rstd, residualOut, features};
    for (int pass = 0; pass < 2; ++pass) {
      const double bytes = elements * (pass == 0 ? sizeof(float) + sizeof(bf16) : sizeof(bf16) + 2 * sizeof(float));
      const double ms = millisecondsPerCall(
          [&] {
            check(pass == 0 ? pace::kernels::launchLayerNormForward(forward, rows, stream)
                            : pace::kernels::launchLayerNormBackward(backward, rows, stream),
                  "launch");
          },
          iterations, stream);
      const size_t half = std::min(static_cast<size_t>(bytes / 2), copyBytes);
      const double copy = millisecondsPerCall(
          [&] { check(cudaMemcpyAsync(copyTarget, copySource, half, cudaMemcpyDeviceToDevice, stream), "copy"); },
          iterations, stream);
      std::printf("%-5s %-9s %-8s %10.1f %10.0f %10s %7.0f%%\n", "norm", pass == 0 ? "forward" : "backward", "to bf16",
                  bytes / 1e6, bytes / (ms * 1e-3) / 1e9, "-", 100.0 * copy / ms);
    }
  }
  return 0;
}
