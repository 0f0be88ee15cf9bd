// The fused PACE linear's epilogues (the GELU after fc1, the residual add with stochastic depth after proj and fc2;
// models/linear_epilogue.h) against the ops they replace, run by ATen's own autograd in float64; and the CPU
// loops' bfloat16 storage against c10's.
#include <c10/util/BFloat16.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "check.h"
#include "cpu/bfloat16.h"
#include "models/forward_context.h"
#include "peft/pace_epilogue_ops.h"
#include "peft/pace_linear.h"
#include "tensor/cpu_bf16.h"
#include "tensor/precision.h"

namespace pace::tests {
namespace {

using models::ForwardContext;
using models::LinearEpilogue;
using peft::PaceLinearStrategy;

struct Shape {
  int64_t rows;
  std::vector<int64_t> middle;  // token axes between rows and features
  int64_t in, out;
};

// What follows the linear: GELU, or the residual add with stochastic depth at `rate` over `copies` stacked copies.
struct Epilogue {
  bool gelu;
  double rate;
  int64_t copies;
  std::string name() const {
    if (gelu) return "gelu";
    std::ostringstream text;
    text << "residual, drop path " << rate << " over " << copies << " cop" << (copies == 1 ? "y" : "ies");
    return text.str();
  }
};

struct Inputs {
  at::Tensor input, weight, bias, deltaWeight, shift, multiplier, residual, outputWeights;
};

std::vector<int64_t> withFeatures(const Shape& s, int64_t features) {
  std::vector<int64_t> shape = {s.rows};
  shape.insert(shape.end(), s.middle.begin(), s.middle.end());
  shape.push_back(features);
  return shape;
}

// float64 inputs; the weights large enough that h = x·W0ᵀ + … spans GELU's curved part.
Inputs makeInputs(const Shape& s, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const auto randn = [&](std::vector<int64_t> shape, double scale) {
    return at::randn(shape, generator, options) * scale;
  };
  Inputs in;
  in.input = randn(withFeatures(s, s.in), 1.0);
  in.weight = randn({s.out, s.in}, 1.5 / std::sqrt(static_cast<double>(s.in)));
  in.bias = randn({s.out}, 0.3);
  in.deltaWeight = randn({s.out, s.in}, 0.5 / std::sqrt(static_cast<double>(s.in)));
  in.shift = randn({s.out}, 0.2);
  in.multiplier = 1.0 + 1.2 * randn({s.rows, s.out}, 1.0);
  in.residual = randn(withFeatures(s, s.out), 1.0);
  in.outputWeights = randn(withFeatures(s, s.out), 1.0);
  return in;
}

struct Result {
  at::Tensor output;
  std::vector<at::Tensor> gradients;  // input, weight, bias, deltaWeight, shift[, residual]
};

// The linear with its epilogue on `device` in `dtype` (float32 inputs under bf16 autocast for kBFloat16), and the
// gradients of Σ y ⊙ r. Stochastic depth draws from a generator seeded alike for every call, so every formulation
// sees the same masks.
Result run(const Inputs& source, const Epilogue& e, PaceLinearStrategy strategy, const c10::Device& device,
           at::ScalarType dtype) {
  const at::ScalarType storage = dtype == at::kBFloat16 ? at::kFloat : dtype;
  const auto prepare = [&](const at::Tensor& t, bool grad) {
    return t.detach().to(device, storage).set_requires_grad(grad);
  };
  const at::Tensor input = prepare(source.input, true), weight = prepare(source.weight, true),
                   bias = prepare(source.bias, true), deltaWeight = prepare(source.deltaWeight, true),
                   shift = prepare(source.shift, true), multiplier = prepare(source.multiplier, false),
                   residual = prepare(source.residual, true);
  at::Generator generator =
      device.is_cpu() ? at::detail::createCPUGenerator(4242) : at::globalContext().defaultGenerator(device).clone();
  generator.set_current_seed(4242);
  ForwardContext context(e.copies, 0, generator, nullptr);
  if (e.copies > 1) context.duplicateBatch(at::zeros({1}));  // the copies are stacked from here on
  const LinearEpilogue epilogue =
      e.gelu ? LinearEpilogue::gelu() : LinearEpilogue::residualAdd(residual, context, e.rate, /*training=*/true);
  Result result;
  {
    const PrecisionScope precision(dtype == at::kBFloat16 ? Precision::Bf16 : Precision::Fp32, device.type());
    result.output = peft::paceLinear(input, weight, bias, deltaWeight, shift, multiplier, strategy, epilogue);
  }
  const at::Tensor loss = (result.output.to(storage) * source.outputWeights.to(device, storage)).sum();
  std::vector<at::Tensor> wrt = {input, weight, bias, deltaWeight, shift};
  if (!e.gelu) wrt.push_back(residual);
  result.gradients = torch::autograd::grad({loss}, wrt);
  return result;
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {4, {17}, 24, 40},   // ViT's tokens
      {6, {49}, 16, 24},   // Swin windows
      {4, {}, 8, 12},      // no token axis
      {2, {5, 6}, 8, 16},  // Swin's [B, H, W, C]
      {1, {1}, 3, 2},
  };
  return all;
}

const std::vector<Epilogue>& epilogues() {
  static const std::vector<Epilogue> all = {{true, 0.0, 1}, {false, 0.0, 1}, {false, 0.5, 1}, {false, 0.5, 2}};
  return all;
}

std::string describe(const Shape& s, const Epilogue& e, const std::string& what) {
  std::ostringstream text;
  text << what << " (" << e.name() << ", rows " << s.rows << " tokens [";
  for (int64_t m : s.middle) text << m << ' ';
  text << "] " << s.in << "->" << s.out << ")";
  return text.str();
}

void compare(const Result& actual, const Result& expected, double outputTolerance, double gradientTolerance,
             const std::string& what) {
  check(actual.output.sizes() == expected.output.sizes(), what + ": output shape");
  const double outputError = relativeError(actual.output.cpu(), expected.output.cpu());
  check(outputError < outputTolerance, what + ": output differs by " + std::to_string(outputError));
  check(actual.gradients.size() == expected.gradients.size(), what + ": gradient count");
  for (size_t i = 0; i < actual.gradients.size(); ++i) {
    const double error = relativeError(actual.gradients[i].cpu(), expected.gradients[i].cpu());
    check(error < gradientTolerance, what + ": gradient " + std::to_string(i) + " differs by " + std::to_string(error));
  }
}

// The masks the residual cases drew must drop some rows and keep others (else they test nothing), every copy of
// a sample sharing its mask.
void checkMasks(const Shape& s, const Epilogue& e, const Result& result, const Inputs& in) {
  if (e.gelu || e.rate == 0.0) return;
  const at::Tensor added = (result.output.cpu().to(at::kDouble) - in.residual).reshape({s.rows, -1});
  const at::Tensor kept = added.abs().amax(1) > 0;
  const int64_t keptRows = kept.sum().item<int64_t>();
  if (s.rows >= 4) check(keptRows > 0 && keptRows < s.rows, describe(s, e, "drop path kept some rows, not all"));
  if (e.copies == 2) {
    const int64_t half = s.rows / 2;
    check(at::equal(kept.slice(0, 0, half), kept.slice(0, half)), describe(s, e, "copies share their masks"));
  }
}

const c10::Device kCpu(c10::DeviceType::CPU);

void fusedEpiloguesMatchTheOpsInFloat64() {
  uint64_t seed = 11;
  for (const Shape& s : shapes()) {
    for (const Epilogue& e : epilogues()) {
      if (s.rows % e.copies != 0) continue;
      const Inputs in = makeInputs(s, seed++);
      const Result expected = run(in, e, PaceLinearStrategy::Unfused, kCpu, at::kDouble);
      const Result fused = run(in, e, PaceLinearStrategy::StackedWeight, kCpu, at::kDouble);
      compare(fused, expected, 1e-12, 1e-11, describe(s, e, "stacked float64 vs unfused float64"));
      checkMasks(s, e, fused, in);
      if (!e.gelu) check(fused.output.scalar_type() == at::kDouble, describe(s, e, "residual output dtype"));
    }
  }
}

// float32 (or bf16 autocast) against the ops in float64 on the CPU, and on a GPU against the ops in float32 there
// (a CUDA generator draws other masks in float64 than in float32 and bf16): the tolerances of the plain fused
// linear's tests (pace_linear_tests), GELU and the residual add adding one rounding each.
void checkAgainstTheOps(const c10::Device& device, bool bf16Autocast) {
  uint64_t seed = 101;
  const at::ScalarType reference = device.is_cpu() ? at::kDouble : at::kFloat;
  const PrecisionScope noTf32(Precision::Fp32, device.type());
  for (const Shape& s : shapes()) {
    for (const Epilogue& e : epilogues()) {
      if (s.rows % e.copies != 0) continue;
      const Inputs in = makeInputs(s, seed++);
      const Result expected = run(in, e, PaceLinearStrategy::Unfused, device, reference);
      if (!bf16Autocast) {
        for (const auto strategy : {PaceLinearStrategy::StackedWeight, PaceLinearStrategy::Auto}) {
          const Result fp32 = run(in, e, strategy, device, at::kFloat);
          compare(fp32, expected, 1e-5, 1e-4, describe(s, e, "float32 vs the ops"));
        }
        continue;
      }
      const Result bf16 = run(in, e, PaceLinearStrategy::StackedWeight, device, at::kBFloat16);
      compare(bf16, expected, 2e-2, 2e-2, describe(s, e, "bf16 autocast vs the ops"));
      // Under autocast GELU's output stays in bf16; the residual stream stays float32, as the unfused ops leave them.
      check(bf16.output.scalar_type() == (e.gelu ? at::kBFloat16 : at::kFloat), describe(s, e, "bf16 output dtype"));
      for (const at::Tensor& gradient : bf16.gradients)
        check(gradient.scalar_type() == at::kFloat, describe(s, e, "bf16: float32 gradients for float32 inputs"));
    }
  }
}

void fusedEpiloguesOnCpuInFloat32() { checkAgainstTheOps(kCpu, false); }

void fusedEpiloguesOnCpuInBf16() {
  skipUnless(cpuBf16ProductsSumInFloat(), kCpuBf16SumsInBf16);
  checkAgainstTheOps(kCpu, true);
}

// A residual the epilogue cannot take (bf16 while it accumulates in float32) falls back to the ops, still right.
void unfusableResidualFallsBackToTheOps() {
  const Shape s{4, {9}, 8, 12};
  const Epilogue e{false, 0.5, 1};
  const Inputs in = makeInputs(s, 7);
  Inputs bf16Residual = in;
  bf16Residual.residual = in.residual.to(at::kBFloat16).to(at::kDouble);  // the values a bf16 residual holds
  const Result expected = run(bf16Residual, e, PaceLinearStrategy::Unfused, kCpu, at::kDouble);

  at::Generator generator = at::detail::createCPUGenerator(4242);
  ForwardContext context(1, 0, generator, nullptr);
  const at::Tensor residual = in.residual.to(at::kBFloat16).requires_grad_(true);
  const at::Tensor x = in.input.to(at::kFloat).requires_grad_(true);
  const at::Tensor y =
      peft::paceLinear(x, in.weight.to(at::kFloat), in.bias.to(at::kFloat), in.deltaWeight.to(at::kFloat),
                       in.shift.to(at::kFloat), in.multiplier.to(at::kFloat), PaceLinearStrategy::StackedWeight,
                       LinearEpilogue::residualAdd(residual, context, e.rate, true));
  check(y.scalar_type() == at::kFloat, "bf16 residual + float32 branch promotes to float32, as the ops do");
  const double error = relativeError(y, expected.output);
  check(error < 1e-5, "unfusable residual: output differs by " + std::to_string(error));
  const at::Tensor loss = (y * in.outputWeights.to(at::kFloat)).sum();
  const auto gradients = torch::autograd::grad({loss}, {x, residual});
  check(relativeError(gradients[0], expected.gradients[0]) < 1e-4, "unfusable residual: input gradient");
  check(relativeError(gradients[1], expected.gradients[5]) < 1e-2, "unfusable residual: residual gradient (bf16)");
}

uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float floatOf(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

void bfloat16StorageRoundsAsC10() {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.5f,
                               3.14159265f,
                               65504.0f,
                               1e-40f,
                               -1e-42f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::denorm_min()};
  for (uint32_t low : {0x7fffu, 0x8000u, 0x8001u, 0x18000u, 0x17fffu}) values.push_back(floatOf(0x3f800000u + low));
  at::Generator generator = at::detail::createCPUGenerator(5);
  const at::Tensor random = at::randint(0, std::numeric_limits<int32_t>::max(), {20000}, generator, at::kLong);
  for (int64_t i = 0; i < random.numel(); ++i) {
    const uint32_t bits = static_cast<uint32_t>(random[i].item<int64_t>()) * 2654435761u;
    values.push_back(floatOf(bits));
  }
  for (const float value : values) {
    const kernels::Bfloat16 ours(value);
    const c10::BFloat16 theirs(value);
    if (std::isnan(value)) {
      check(std::isnan(static_cast<float>(ours)), "NaN stays NaN");
      continue;
    }
    check(ours.bits == theirs.x, "bfloat16 of " + std::to_string(bitsOf(value)) + ": ours " +
                                     std::to_string(ours.bits) + ", c10's " + std::to_string(theirs.x));
    check(bitsOf(static_cast<float>(ours)) == bitsOf(static_cast<float>(theirs)), "widening is exact");
  }
}

// The kernels index every operand by the output's shape: a mis-sized one must be refused, naming it, not read.
void misSizedOperandsAreRefused() {
  using peft::EpilogueKind;
  const int64_t samples = 3, tokens = 4, out = 8;
  const at::Tensor stacked = at::randn({samples * tokens, 2 * out});
  const at::Tensor bias = at::randn({out}), noise = at::randn({samples, out}), scale = at::ones({samples});
  const at::Tensor residual = at::randn({samples * tokens, out});
  const auto refused = [](const std::function<void()>& call, const std::string& naming) {
    try {
      call();
    } catch (const c10::Error& error) {
      const std::string message = error.what();
      check(message.find(naming) != std::string::npos, "the error names " + naming + ": " + message);
      return;
    }
    check(false, "a mis-sized " + naming + " was accepted");
  };
  const auto forward = [&](const at::Tensor& b, const at::Tensor& n, const at::Tensor& r, const at::Tensor& res,
                           int64_t perRow) {
    return peft::paceEpilogueForward(EpilogueKind::Residual, stacked, b, at::Tensor(), n, r, res, perRow);
  };
  check(forward(bias, noise, scale, residual, tokens).output.size(0) == samples * tokens, "well-sized operands run");
  refused([&] { forward(at::randn({out + 1}), noise, scale, residual, tokens); }, "bias");
  refused([&] { forward(bias, at::randn({samples + 1, out}), scale, residual, tokens); }, "noise");
  refused([&] { forward(bias, noise, at::ones({samples * tokens}), residual, tokens); }, "per-row scale");
  refused([&] { forward(bias, noise, scale, at::randn({samples, out}), tokens); }, "residual");
  refused([&] { forward(bias, noise, scale, residual, 5); }, "whole samples");
  const at::Tensor grad = at::randn({samples * tokens, out});
  refused(
      [&] {
        peft::paceEpilogueBackward(EpilogueKind::Gelu, grad, at::randn({samples, out}), noise, at::Tensor(), tokens,
                                   at::kFloat);
      },
      "pre-activation");
  refused(
      [&] {
        peft::paceEpilogueBackward(EpilogueKind::Gelu, grad, at::Tensor(), noise, at::Tensor(), tokens, at::kFloat);
      },
      "needs h");
  refused(
      [&] {
        peft::paceEpilogueBackward(EpilogueKind::Residual, grad, at::Tensor(), noise, at::ones({1}), tokens,
                                   at::kFloat);
      },
      "per-row scale");
}

}  // namespace

TestList paceEpilogueTests() {
  return {
      {"fused GELU and residual epilogues equal the ops they replace in float64 (values, gradients, drop path)",
       fusedEpiloguesMatchTheOpsInFloat64},
      {"fused epilogues on the CPU in float32 match the ops in float64", fusedEpiloguesOnCpuInFloat32},
      {"fused epilogues on the CPU under bf16 autocast match the ops in float64", fusedEpiloguesOnCpuInBf16},
      {"a residual the fused epilogue cannot take falls back to the ops", unfusableResidualFallsBackToTheOps},
      {"the CPU loops' bfloat16 rounds as c10's", bfloat16StorageRoundsAsC10},
      {"the epilogue refuses operands of another size than its output's, naming them", misSizedOperandsAreRefused},
  };
}

TestList paceEpilogueCudaTests() {
  return {{"fused epilogues on CUDA (kernels, float32 and bf16) match the ops in float32", [] {
             skipUnless(at::hasCUDA(), "no CUDA device visible");
             checkAgainstTheOps(c10::Device(c10::DeviceType::CUDA, 0), false);
             checkAgainstTheOps(c10::Device(c10::DeviceType::CUDA, 0), true);
           }}};
}

}  // namespace pace::tests
