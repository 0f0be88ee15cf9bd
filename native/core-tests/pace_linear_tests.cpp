// The fused PACE linear (peft/pace_linear.h) against its formula written out by hand in float64, against the
// reference's two-linear formulation, and against finite differences.
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <sstream>

#include "check.h"
#include "errors.h"
#include "peft/pace_linear.h"
#include "tensor/cpu_bf16.h"
#include "tensor/precision.h"

namespace pace::tests {
namespace {

using peft::PaceLinearStrategy;

struct Case {
  int64_t rows;
  std::vector<int64_t> middle;  // the token axes between rows and features
  int64_t in, out;
  bool bias, shift, inputGrad, weightGrad;
};

struct Inputs {
  at::Tensor input, weight, bias, deltaWeight, shift, multiplier;
  std::vector<at::Tensor> differentiable() const {
    std::vector<at::Tensor> result;
    for (const at::Tensor& t : {input, weight, bias, deltaWeight, shift})
      if (t.defined() && t.requires_grad()) result.push_back(t);
    return result;
  }
};

Inputs makeInputs(const Case& c, at::Generator& generator, at::ScalarType dtype) {
  const auto options = at::TensorOptions().dtype(dtype);
  auto randn = [&](std::vector<int64_t> shape, double scale, bool grad) {
    return (at::randn(shape, generator, options) * scale).set_requires_grad(grad);
  };
  std::vector<int64_t> inputShape = {c.rows};
  inputShape.insert(inputShape.end(), c.middle.begin(), c.middle.end());
  inputShape.push_back(c.in);
  Inputs in;
  in.input = randn(inputShape, 1.0, c.inputGrad);
  in.weight = randn({c.out, c.in}, 1.0 / std::sqrt(static_cast<double>(c.in)), c.weightGrad);
  if (c.bias) in.bias = randn({c.out}, 0.1, c.weightGrad);
  in.deltaWeight = randn({c.out, c.in}, 0.3 / std::sqrt(static_cast<double>(c.in)), true);
  if (c.shift) in.shift = randn({c.out}, 0.1, true);
  in.multiplier = 1.0 + 1.2 * at::randn({c.rows, c.out}, generator, options);  // z = 1 + σ·ε, σ = 1.2
  return in;
}

struct Result {
  at::Tensor output;
  std::vector<at::Tensor> gradients;
};

// The output and the gradients of Σ y ⊙ r for a fixed random r.
Result run(const Inputs& in, PaceLinearStrategy strategy, const at::Tensor& outputWeights) {
  Result result;
  result.output = peft::paceLinear(in.input, in.weight, in.bias, in.deltaWeight, in.shift, in.multiplier, strategy);
  const at::Tensor loss = (result.output * outputWeights.to(result.output.scalar_type())).sum();
  result.gradients = torch::autograd::grad({loss}, in.differentiable());
  return result;
}

// A case's float32 inputs, the fixed output weights r of the loss Σ y ⊙ r, and the float64 result to hold
// every formulation to.
struct Reference {
  Inputs inputs;
  at::Tensor outputWeights;
  Result exact;
};

// y = X·W0ᵀ + b0 + z ⊙ (X·ΔWᵀ + c) and the gradients of L = Σ y ⊙ r, computed independently of the code under
// test: float64 copies, plain at:: products, the backward written out by hand (no autograd). With G = r and
// sums over rows and tokens: dX = G·W0 + (z ⊙ G)·ΔW, dW0 = Gᵀ·X, db0 = Σ G, dΔW = (z ⊙ G)ᵀ·X, dc = Σ z ⊙ G.
Result float64Formula(const Inputs& in, const at::Tensor& outputWeights) {
  auto f64 = [](const at::Tensor& t) { return t.defined() ? t.detach().to(at::kDouble) : t; };
  const at::Tensor x = f64(in.input), w0 = f64(in.weight), b0 = f64(in.bias), dw = f64(in.deltaWeight),
                   c = f64(in.shift), r = f64(outputWeights);
  const int64_t inFeatures = x.size(-1), outFeatures = w0.size(0);
  std::vector<int64_t> zShape(x.dim(), 1);  // one multiplier per row and channel, shared by the row's tokens
  zShape.front() = x.size(0);
  zShape.back() = outFeatures;
  const at::Tensor z = f64(in.multiplier).reshape(zShape);
  std::vector<int64_t> outShape = x.sizes().vec();
  outShape.back() = outFeatures;

  const at::Tensor X = x.reshape({-1, inFeatures});
  at::Tensor frozen = at::matmul(X, w0.t());
  if (b0.defined()) frozen = frozen + b0;
  at::Tensor adapter = at::matmul(X, dw.t());
  if (c.defined()) adapter = adapter + c;
  Result result;
  result.output = frozen.reshape(outShape) + z * adapter.reshape(outShape);

  const at::Tensor G = r.reshape({-1, outFeatures});
  const at::Tensor zG = (z * r).reshape({-1, outFeatures});
  if (in.input.requires_grad()) result.gradients.push_back((at::matmul(G, w0) + at::matmul(zG, dw)).reshape(x.sizes()));
  if (in.weight.requires_grad()) result.gradients.push_back(at::matmul(G.t(), X));
  if (in.bias.defined() && in.bias.requires_grad()) result.gradients.push_back(G.sum(0));
  if (in.deltaWeight.requires_grad()) result.gradients.push_back(at::matmul(zG.t(), X));
  if (in.shift.defined() && in.shift.requires_grad()) result.gradients.push_back(zG.sum(0));
  return result;
}

Reference referenceFor(const Case& c, at::Generator& generator) {
  Reference reference;
  reference.inputs = makeInputs(c, generator, at::kFloat);
  std::vector<int64_t> outShape = reference.inputs.input.sizes().vec();
  outShape.back() = c.out;
  reference.outputWeights = at::randn(outShape, generator, at::TensorOptions().dtype(at::kFloat));
  reference.exact = float64Formula(reference.inputs, reference.outputWeights);
  check(reference.exact.gradients.size() == reference.inputs.differentiable().size(), "float64 gradient count");
  return reference;
}

std::string describe(const Case& c, const char* strategy) {
  std::ostringstream text;
  text << strategy << " rows " << c.rows << " tokens [";
  for (int64_t m : c.middle) text << m << ' ';
  text << "] " << c.in << "->" << c.out;
  return text.str();
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {4, {17}, 48, 144, true, true, true, false},      // the ViT fixture's qkv (17 tokens)
      {8, {49}, 32, 96, true, true, true, false},       // a Swin window
      {3, {5, 6}, 16, 32, false, true, true, false},    // Swin's [B, H, W, C] without a bias
      {2, {}, 48, 10, true, false, true, true},         // no token axis; frozen weights take gradients too
      {5, {9}, 7, 13, true, true, false, false},        // odd sizes; nothing upstream needs dX
      {3, {197}, 768, 768, true, true, true, false},    // ViT-B/16's proj: each row's weight is its own chunk
      {16, {197}, 384, 1536, true, true, true, false},  // ViT-S/16's fc1 at batch 8 duplicated
      {1, {1}, 3, 2, true, true, true, true},
  };
  return all;
}

void fusedMatchesUnfusedOnRandomShapes() {
  at::Generator generator = at::detail::createCPUGenerator(20241127);
  for (const Case& c : cases()) {
    const auto [inputs, outputWeights, exact] = referenceFor(c, generator);
    const Result unfused = run(inputs, PaceLinearStrategy::Unfused, outputWeights);
    check(relativeError(unfused.output, exact.output) < 1e-5, describe(c, "unfused float32 vs float64"));
    for (size_t i = 0; i < unfused.gradients.size(); ++i)
      check(relativeError(unfused.gradients[i], exact.gradients[i]) < 1e-4,
            describe(c, "unfused") + ": gradient " + std::to_string(i) + " vs float64");
    for (const auto& [strategy, name] : {std::pair{PaceLinearStrategy::PerRowWeight, "per-row"},
                                         std::pair{PaceLinearStrategy::StackedWeight, "stacked"}}) {
      const Result fused = run(inputs, strategy, outputWeights);
      check(fused.output.sizes() == unfused.output.sizes(), describe(c, name) + ": output shape");
      const double outputError = relativeError(fused.output, unfused.output);
      check(outputError < 1e-4, describe(c, name) + ": output differs by " + std::to_string(outputError));
      check(relativeError(fused.output, exact.output) < 1e-5, describe(c, name) + ": output vs float64");
      check(fused.gradients.size() == unfused.gradients.size(), describe(c, name) + ": gradient count");
      for (size_t i = 0; i < fused.gradients.size(); ++i) {
        const double error = relativeError(fused.gradients[i], unfused.gradients[i]);
        check(error < 1e-3,
              describe(c, name) + ": gradient " + std::to_string(i) + " differs by " + std::to_string(error));
        check(relativeError(fused.gradients[i], exact.gradients[i]) < 1e-4,
              describe(c, name) + ": gradient " + std::to_string(i) + " vs float64");
      }
    }
  }
}

// Central differences in float64 along a random direction of every differentiable input, against the
// directional derivative the custom backward gives.
void fusedBackwardMatchesFiniteDifferences() {
  at::Generator generator = at::detail::createCPUGenerator(7);
  const Case c{3, {4}, 6, 5, true, true, true, true};
  for (const auto strategy : {PaceLinearStrategy::PerRowWeight, PaceLinearStrategy::StackedWeight}) {
    Inputs inputs = makeInputs(c, generator, at::kDouble);
    const at::Tensor outputWeights = at::randn({3, 4, 5}, generator, at::TensorOptions().dtype(at::kDouble));
    const Result analytic = run(inputs, strategy, outputWeights);
    const std::vector<at::Tensor> parameters = inputs.differentiable();
    for (size_t i = 0; i < parameters.size(); ++i) {
      const at::Tensor direction = at::randn(parameters[i].sizes(), generator, parameters[i].options());
      const double expected = (analytic.gradients[i] * direction).sum().item<double>();
      const double h = 1e-6;
      auto lossAt = [&](double step) {
        at::NoGradGuard noGrad;
        const at::Tensor original = parameters[i].detach().clone();
        parameters[i].detach().add_(direction, step);
        const double loss = (peft::paceLinear(inputs.input, inputs.weight, inputs.bias, inputs.deltaWeight,
                                              inputs.shift, inputs.multiplier, strategy) *
                             outputWeights)
                                .sum()
                                .item<double>();
        parameters[i].detach().copy_(original);
        return loss;
      };
      const double numeric = (lossAt(h) - lossAt(-h)) / (2 * h);
      check(std::abs(numeric - expected) <= 1e-7 * std::max(1.0, std::abs(expected)),
            "finite differences disagree for input " + std::to_string(i) + ": " + std::to_string(numeric) + " vs " +
                std::to_string(expected));
    }
  }
}

void gradientsOnlyWhereNeeded() {
  at::Generator generator = at::detail::createCPUGenerator(3);
  const Case c{2, {3}, 4, 5, true, true, false, false};
  const Inputs inputs = makeInputs(c, generator, at::kFloat);
  const at::Tensor y = peft::paceLinear(inputs.input, inputs.weight, inputs.bias, inputs.deltaWeight, inputs.shift,
                                        inputs.multiplier, PaceLinearStrategy::PerRowWeight);
  y.sum().backward();
  check(!inputs.input.grad().defined() && !inputs.weight.grad().defined() && !inputs.bias.grad().defined(),
        "frozen inputs received gradients");
  check(inputs.deltaWeight.grad().defined() && inputs.shift.grad().defined(), "the adapter terms got no gradient");

  auto expectError = [&](const std::function<void()>& body, const std::string& expected) {
    try {
      body();
    } catch (const std::exception& error) {
      check(std::string(error.what()).find(expected) != std::string::npos,
            "expected an error mentioning '" + expected + "', got: " + error.what());
      return;
    }
    throw Failure{"expected an error mentioning '" + expected + "'"};
  };
  const at::Tensor trainableNoise = inputs.multiplier.detach().clone().set_requires_grad(true);
  expectError([&] { peft::paceLinear(inputs.input, inputs.weight, {}, inputs.deltaWeight, {}, trainableNoise); },
              "multiplier takes no gradient");
  const auto wrongMultiplier = [&] {
    peft::paceLinear(inputs.input, inputs.weight, {}, inputs.deltaWeight, {}, at::ones({2, 4}));
  };
  expectError(wrongMultiplier, "multiplier must be [2, 5]");
  const auto wrongDelta = [&] {
    peft::paceLinear(inputs.input, inputs.weight, {}, at::ones({5, 3}), {}, inputs.multiplier);
  };
  expectError(wrongDelta, "deltaWeight must have the weight's shape");
}

void autoPicksPerRowWeightsForLongRows() {
  check(peft::choosePaceLinearStrategy(197, 384, 1152) == PaceLinearStrategy::PerRowWeight, "ViT-S/16 qkv");
  check(peft::choosePaceLinearStrategy(49, 96, 288) == PaceLinearStrategy::PerRowWeight, "a Swin window");
  check(peft::choosePaceLinearStrategy(8, 384, 1152) == PaceLinearStrategy::Unfused, "rows of 8 tokens");
  check(peft::choosePaceLinearStrategy(197, 768, 2304, c10::DeviceType::CUDA) == PaceLinearStrategy::StackedWeight,
        "ViT-B/16 qkv on a GPU");
}

Inputs onDevice(const Inputs& source, const c10::Device& device) {
  auto move = [&](const at::Tensor& t) {
    return t.defined() ? t.detach().to(device).set_requires_grad(t.requires_grad()) : t;
  };
  return {move(source.input),       move(source.weight), move(source.bias),
          move(source.deltaWeight), move(source.shift),  move(source.multiplier)};
}

// Under bf16 autocast the fused op computes in bfloat16 and hands float32 gradients back to float32 inputs.
// bf16 keeps 8 significant bits (relative rounding 2^-9 per element, products accumulated in float32), so the
// result sits within a few 1e-3 of float64; 2e-2 leaves room for the longest sums here.
void checkBf16Autocast(const c10::Device& device, PaceLinearStrategy strategy) {
  at::Generator generator = at::detail::createCPUGenerator(99);
  for (const Case& c : cases()) {
    const auto [cpu, outputWeights, exact] = referenceFor(c, generator);
    const Inputs inputs = onDevice(cpu, device);
    Result fused;
    {
      const PrecisionScope bf16(Precision::Bf16, device.type());
      check(autocastDtype(device.type()) == at::kBFloat16, "bf16 scope: autocast is on");
      fused.output = peft::paceLinear(inputs.input, inputs.weight, inputs.bias, inputs.deltaWeight, inputs.shift,
                                      inputs.multiplier, strategy);
    }
    check(!autocastDtype(device.type()), "bf16 scope: autocast is off again after it");
    check(fused.output.scalar_type() == at::kBFloat16, describe(c, "bf16") + ": output dtype");
    const at::Tensor loss = (fused.output.to(at::kFloat) * outputWeights.to(device)).sum();
    fused.gradients = torch::autograd::grad({loss}, inputs.differentiable());
    const double outputError = relativeError(fused.output.cpu(), exact.output);
    check(outputError < 2e-2, describe(c, "bf16") + ": output vs float64 " + std::to_string(outputError));
    for (size_t i = 0; i < fused.gradients.size(); ++i) {
      check(fused.gradients[i].scalar_type() == at::kFloat, describe(c, "bf16") + ": gradient dtype");
      const double error = relativeError(fused.gradients[i].cpu(), exact.gradients[i]);
      check(error < 2e-2,
            describe(c, "bf16") + ": gradient " + std::to_string(i) + " vs float64 " + std::to_string(error));
    }
  }
}

// The probe against a product of ViT-B's width: summed in float32 a bf16 product of random values sits within
// output rounding (2^-9) of the exact product of its bf16 inputs; summed in bf16 it is percents off. And where the
// sums are bf16, precision 'bf16' on the CPU is refused before anything runs.
void cpuBf16ProbeAgreesWithAProductsError() {
  at::Generator generator = at::detail::createCPUGenerator(5);
  const at::Tensor a = at::randn({8, 768}, generator, at::kFloat).to(at::kBFloat16);
  const at::Tensor b = at::randn({768, 8}, generator, at::kFloat).to(at::kBFloat16);
  const at::Tensor exact = a.to(at::kDouble).mm(b.to(at::kDouble));
  const double error = relativeError(a.mm(b), exact);
  const bool sumsInFloat = cpuBf16ProductsSumInFloat();
  check(sumsInFloat == (error < 1e-2), "the probe says the sums are " + std::string(sumsInFloat ? "float32" : "bf16") +
                                           ", a 768-long product is off by " + std::to_string(error));
  try {
    const PrecisionScope bf16(Precision::Bf16, c10::DeviceType::CPU);
  } catch (const OptionError& error) {
    check(!sumsInFloat, std::string("bf16 refused where products sum in float32: ") + error.what());
    check(std::string(error.what()).find("use precision 'fp32'") != std::string::npos,
          std::string("the refusal does not say what to use: ") + error.what());
    return;
  }
  check(sumsInFloat, "precision 'bf16' was taken on a CPU whose bf16 products sum in bf16");
}

void bf16AutocastOnCpu() {
  skipUnless(cpuBf16ProductsSumInFloat(), kCpuBf16SumsInBf16);
  checkBf16Autocast(c10::Device(c10::DeviceType::CPU), PaceLinearStrategy::StackedWeight);
}

// CUDA (only listed where a GPU is visible): the stacked product with its element-wise kernels, float32 with
// TF32 off against float64 on the CPU, then under bf16 autocast.
void fusedOnCudaMatchesFloat64() {
  const c10::Device cuda(c10::DeviceType::CUDA, 0);
  at::Generator generator = at::detail::createCPUGenerator(1234);
  const PrecisionScope fp32(Precision::Fp32, cuda.type());
  for (const Case& c : cases()) {
    const auto [cpu, outputWeights, exact] = referenceFor(c, generator);
    // Per-row weights asked for on a GPU (a process-wide setting, as setPaceLinearStrategy makes) are served by the
    // stacked product: the host loops that build them read device memory (a crash before).
    for (const auto strategy :
         {PaceLinearStrategy::Auto, PaceLinearStrategy::StackedWeight, PaceLinearStrategy::PerRowWeight}) {
      const Result fused = run(onDevice(cpu, cuda), strategy, outputWeights.to(cuda));
      const double outputError = relativeError(fused.output.cpu(), exact.output);
      check(outputError < 1e-5, describe(c, "cuda") + ": output vs float64 " + std::to_string(outputError));
      for (size_t i = 0; i < fused.gradients.size(); ++i) {
        const double error = relativeError(fused.gradients[i].cpu(), exact.gradients[i]);
        check(error < 1e-4,
              describe(c, "cuda") + ": gradient " + std::to_string(i) + " vs float64 " + std::to_string(error));
      }
    }
  }
  checkBf16Autocast(cuda, PaceLinearStrategy::Auto);
}

}  // namespace

TestList paceLinearTests() {
  return {
      {"fused PACE linear matches its formula in float64 and the two-linear form on random shapes",
       fusedMatchesUnfusedOnRandomShapes},
      {"fused PACE linear's backward matches finite differences (float64)", fusedBackwardMatchesFiniteDifferences},
      {"fused PACE linear computes only the gradients that are needed", gradientsOnlyWhereNeeded},
      {"fused PACE linear picks per-row weights for long rows", autoPicksPerRowWeightsForLongRows},
      {"the CPU's bf16 probe agrees with a product's error, and bf16 is refused where sums are bf16",
       cpuBf16ProbeAgreesWithAProductsError},
      {"fused PACE linear under bf16 autocast on the CPU", bf16AutocastOnCpu},
  };
}

TestList paceLinearCudaTests() {
  return {{"fused PACE linear on CUDA (kernels, fp32 and bf16) matches float64", [] {
             skipUnless(at::hasCUDA(), "no CUDA device visible");
             fusedOnCudaMatchesFloat64();
           }}};
}

}  // namespace pace::tests
