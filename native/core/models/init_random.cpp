#include "models/init_random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GeneratorImpl.h>
#include <torch/nn/init.h>

#include <cmath>
#include <functional>

namespace pace::models {
namespace {

thread_local std::optional<at::Generator> currentGenerator;

// Runs `draw` on `tensor` itself when it lives on the CPU, else on a CPU tensor of its dtype copied over.
void drawInto(torch::Tensor& tensor, const std::function<void(torch::Tensor&, c10::optional<at::Generator>)>& draw) {
  torch::NoGradGuard noGrad;
  // c10::optional is std::optional only from libtorch 2.x on.
  const c10::optional<at::Generator> generator =
      currentGenerator ? c10::optional<at::Generator>(*currentGenerator) : c10::nullopt;
  if (tensor.device().is_cpu()) {
    draw(tensor, generator);
    return;
  }
  torch::Tensor host = torch::empty(tensor.sizes(), tensor.options().device(torch::kCPU));
  draw(host, generator);
  tensor.copy_(host);
}

}  // namespace

at::Generator newInitGenerator(std::optional<uint64_t> seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed ? *seed : c10::detail::getNonDeterministicRandom());
}

InitRandomScope::InitRandomScope(at::Generator generator) : previous_(std::move(currentGenerator)) {
  currentGenerator = std::move(generator);
}

InitRandomScope::~InitRandomScope() { currentGenerator = std::move(previous_); }

std::optional<at::Generator> scopedInitGenerator() { return currentGenerator; }

void uniformInit(torch::Tensor& tensor, double from, double to) {
  drawInto(tensor, [&](torch::Tensor& t, c10::optional<at::Generator> generator) { t.uniform_(from, to, generator); });
}

void normalInit(torch::Tensor& tensor, double mean, double std) {
  drawInto(tensor, [&](torch::Tensor& t, c10::optional<at::Generator> generator) { t.normal_(mean, std, generator); });
}

void truncatedNormal(torch::Tensor& tensor, double std, double low, double high) {
  // Inverse-CDF sampling, as timm does: uniform between the bounds' CDF values, then erfinv.
  const auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double lower = cdf(low / std), upper = cdf(high / std);
  drawInto(tensor, [&](torch::Tensor& t, c10::optional<at::Generator> generator) {
    t.uniform_(2 * lower - 1, 2 * upper - 1, generator).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(low, high);
  });
}

void xavierUniform(torch::Tensor& tensor) {
  const auto [fanIn, fanOut] = torch::nn::init::_calculate_fan_in_and_fan_out(tensor);
  const double bound = std::sqrt(6.0 / static_cast<double>(fanIn + fanOut));
  uniformInit(tensor, -bound, bound);
}

void torchDefaultInit(torch::Tensor& weight, torch::Tensor& bias) {
  // kaiming_uniform_(a = √5) over fan_in gives the same bound as the bias's: 1/√fan_in.
  const double bound =
      1.0 / std::sqrt(static_cast<double>(std::get<0>(torch::nn::init::_calculate_fan_in_and_fan_out(weight))));
  uniformInit(weight, -bound, bound);
  if (bias.defined()) uniformInit(bias, -bound, bound);
}

}  // namespace pace::models
