#pragma once
// Where parameter initialisation draws its numbers. Every model owns a CPU generator (Backbone::initGenerator),
// made at its creation from its seed; its constructors, addAdapters and resetHead draw from it through an
// InitRandomScope, never from libtorch's global generator. A seeded model and its adapters are therefore the same
// whatever other models are made, extended or reset at the same time, on any thread.
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>

namespace pace::models {

// A CPU generator seeded with `seed`, or from the operating system's entropy when there is none.
at::Generator newInitGenerator(std::optional<uint64_t> seed);

// Installs `generator` as this thread's initialisation generator until the scope ends (scopes nest).
class InitRandomScope {
 public:
  explicit InitRandomScope(at::Generator generator);
  ~InitRandomScope();
  InitRandomScope(const InitRandomScope&) = delete;
  InitRandomScope& operator=(const InitRandomScope&) = delete;

 private:
  std::optional<at::Generator> previous_;
};

// The generator of the innermost scope on this thread, if any.
std::optional<at::Generator> scopedInitGenerator();

// In-place initialisers drawing from the scoped generator (libtorch's global one outside any scope). A tensor off
// the CPU is drawn on the CPU and copied, so a model gets the same numbers on every device.
void uniformInit(torch::Tensor& tensor, double from, double to);
void normalInit(torch::Tensor& tensor, double mean, double std);
// timm's trunc_normal_: normal(mean 0, std) truncated to [low, high] (absolute bounds).
void truncatedNormal(torch::Tensor& tensor, double std, double low = -2.0, double high = 2.0);
// torch.nn.init.xavier_uniform_ with gain 1.
void xavierUniform(torch::Tensor& tensor);
// torch.nn.Linear's and Conv2d's reset_parameters: weight and bias uniform in ±1/√fan_in.
void torchDefaultInit(torch::Tensor& weight, torch::Tensor& bias);

}  // namespace pace::models
