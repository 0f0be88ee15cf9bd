// layerNormTo (tensor/layer_norm_to.h): LayerNorm written once in a narrower dtype, against ATen's layer_norm (and
// its autograd) in float64, float32, and float32 followed by a cast to bf16.
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <sstream>

#include "check.h"
#include "tensor/fused_epilogues.h"
#include "tensor/layer_norm_to.h"

namespace pace::tests {
namespace {

struct Shape {
  std::vector<int64_t> leading;
  int64_t features;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {{4, 17}, 48}, {{2, 197}, 768}, {{3}, 1}, {{5, 3}, 7}, {{2, 7, 7}, 1000}, {{1}, 3072},
  };
  return all;
}

std::string describe(const Shape& s, const std::string& what) {
  std::ostringstream text;
  text << what << " (leading [";
  for (int64_t d : s.leading) text << d << ' ';
  text << "], " << s.features << " features)";
  return text.str();
}

struct Inputs {
  at::Tensor input, weight, bias, outputWeights;
};

Inputs makeInputs(const Shape& s, uint64_t seed, const c10::Device& device, at::ScalarType dtype) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  std::vector<int64_t> shape = s.leading;
  shape.push_back(s.features);
  Inputs in;
  // An offset and a spread per row, as a residual stream has: the mean and variance really matter.
  in.input = (at::randn(shape, generator, options) * 3.0 + 1.5).to(device, dtype);
  in.weight = (1.0 + 0.3 * at::randn({s.features}, generator, options)).to(device, dtype);
  in.bias = (0.2 * at::randn({s.features}, generator, options)).to(device, dtype);
  in.outputWeights = at::randn(shape, generator, options).to(device, dtype);
  return in;
}

struct Result {
  at::Tensor output, gradInput;
};

// max |actual − expected| over max(max |expected|, 1): relative for values of order one and more, absolute for the
// gradient of a single feature, which is exactly 0 (x̂ = 0) and which ATen leaves at 1e-14.
double error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  return (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>() / scale;
}

Result fused(const Inputs& in, double eps, at::ScalarType output) {
  const at::Tensor x = in.input.detach().requires_grad_(true);
  Result result;
  result.output = layerNormTo(x, in.weight, in.bias, eps, output);
  const at::Tensor loss = (result.output.to(in.outputWeights.scalar_type()) * in.outputWeights).sum();
  result.gradInput = torch::autograd::grad({loss}, {x})[0];
  return result;
}

// ATen's layer_norm in the input's dtype, its output cast to `output` (what autocast ran before).
Result reference(const Inputs& in, double eps, at::ScalarType output) {
  const at::Tensor x = in.input.detach().requires_grad_(true);
  Result result;
  result.output = at::layer_norm(x, {x.size(-1)}, in.weight, in.bias, eps).to(output);
  const at::Tensor loss = (result.output.to(in.outputWeights.scalar_type()) * in.outputWeights).sum();
  result.gradInput = torch::autograd::grad({loss}, {x})[0];
  return result;
}

void checkShapes(const c10::Device& device) {
  uint64_t seed = 1;
  for (const Shape& s : shapes()) {
    for (const double eps : {1e-5, 1e-6}) {
      if (device.is_cpu()) {
        const Inputs in = makeInputs(s, seed++, device, at::kDouble);
        check(layerNormToFuses(in.input, in.weight, in.bias, at::kDouble), describe(s, "float64 runs the kernels"));
        const Result ours = fused(in, eps, at::kDouble), theirs = reference(in, eps, at::kDouble);
        check(error(ours.output, theirs.output) < 1e-12, describe(s, "float64 output"));
        check(error(ours.gradInput, theirs.gradInput) < 1e-10, describe(s, "float64 input gradient"));
      }
      // float32 inputs against ATen in float64 on the same values (ATen's own float32 LayerNorm is off by
      // 1e-3 for a single feature, where x − μ should be exactly 0).
      const Inputs in = makeInputs(s, seed++, device, at::kFloat);
      Inputs in64 = in;
      for (at::Tensor* t : {&in64.input, &in64.weight, &in64.bias, &in64.outputWeights}) *t = t->cpu().to(at::kDouble);
      const Result exact = reference(in64, eps, at::kDouble);
      check(layerNormToFuses(in.input, in.weight, in.bias, at::kBFloat16), describe(s, "float32 to bf16 fuses"));
      const Result ours32 = fused(in, eps, at::kFloat);
      check(error(ours32.output.cpu(), exact.output) < 1e-5, describe(s, "float32 output"));
      check(error(ours32.gradInput.cpu(), exact.gradInput) < 1e-4, describe(s, "float32 input gradient"));
      // bf16 output: the float32 result rounded once, so at most one bf16 step (2^-8 relative) from the exact
      // value rounded, where the float32 value sits at a rounding boundary, and almost always identical to it.
      const Result ours16 = fused(in, eps, at::kBFloat16);
      check(ours16.output.scalar_type() == at::kBFloat16, describe(s, "bf16 output dtype"));
      const at::Tensor a = ours16.output.cpu().to(at::kDouble), b = exact.output.to(at::kBFloat16).to(at::kDouble);
      const double steps = ((a - b).abs() / b.abs().clamp_min(1e-3)).max().item<double>();
      check(steps <= 1.0 / 128, describe(s, "bf16 output within one bf16 step of the exact value"));
      const double same = a.eq(b).to(at::kDouble).mean().item<double>();
      check(same > 0.99,
            describe(s, "bf16 outputs identical to the exact value rounded (" + std::to_string(same) + ")"));
      // The incoming gradient reaches a bf16 output rounded to bf16 (as it does after ATen's cast): 2^-9 relative.
      check(ours16.gradInput.scalar_type() == at::kFloat, describe(s, "float32 input gradient from bf16"));
      check(error(ours16.gradInput.cpu(), exact.gradInput) < 1e-2,
            describe(s, "input gradient through the bf16 output"));
    }
  }
}

void layerNormToMatchesAtenOnCpu() { checkShapes(c10::Device(c10::DeviceType::CPU)); }

// Where it cannot run its kernels it is ATen's layer_norm and a cast: trainable parameters (their gradients come
// from ATen's backward), float16 output, fused epilogues switched off.
void layerNormToFallsBackToAten() {
  const Shape s{{3, 5}, 16};
  Inputs in = makeInputs(s, 9, c10::Device(c10::DeviceType::CPU), at::kFloat);
  in.weight.requires_grad_(true);
  check(!layerNormToFuses(in.input, in.weight, in.bias, at::kBFloat16), "trainable weight: no fusion");
  const at::Tensor y = layerNormTo(in.input, in.weight, in.bias, 1e-5, at::kBFloat16);
  check(y.scalar_type() == at::kBFloat16, "fallback output dtype");
  const at::Tensor weightGrad = torch::autograd::grad({(y.to(at::kFloat) * in.outputWeights).sum()}, {in.weight})[0];
  check(weightGrad.defined() && weightGrad.abs().sum().item<double>() > 0, "fallback: the weight gets a gradient");
  in.weight.requires_grad_(false);
  check(!layerNormToFuses(in.input, in.weight, in.bias, at::kHalf), "float16 output: no fusion");
  setFusedEpilogues(false);
  const bool off = !layerNormToFuses(in.input, in.weight, in.bias, at::kBFloat16);
  setFusedEpilogues(true);
  check(off, "fused epilogues off: no fusion");
}

}  // namespace

TestList layerNormTests() {
  return {
      {"LayerNorm written in bf16 matches ATen's layer_norm and cast (float64, float32, bf16; gradients)",
       layerNormToMatchesAtenOnCpu},
      {"LayerNorm written in bf16 falls back to ATen where its kernels cannot run", layerNormToFallsBackToAten},
  };
}

TestList layerNormCudaTests() {
  return {{"LayerNorm written in bf16 on CUDA matches ATen's layer_norm and cast", [] {
             skipUnless(at::hasCUDA(), "no CUDA device visible");
             checkShapes(c10::Device(c10::DeviceType::CUDA, 0));
           }}};
}

}  // namespace pace::tests
