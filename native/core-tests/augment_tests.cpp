// The stronger augmentation's arithmetic against values worked out by hand from timm's definitions: crop boxes
// (attempts, Python's half-to-even rounding, the centre fallback), RandAugment's level-to-argument mapping and
// config strings, mixup's smoothed targets, and the soft-target cross-entropy.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <functional>
#include <string>

#include "check.h"
#include "data/mixup.h"
#include "data/rand_augment.h"
#include "data/random_erasing.h"
#include "data/resized_crop.h"
#include "data/transforms.h"
#include "errors.h"
#include "peft/cross_entropy.h"
#include "tensor/to_device.h"

#ifdef PACE_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace pace::tests {
namespace {

bool near(double a, double b, double tolerance = 1e-12) { return std::abs(a - b) <= tolerance; }

std::string boxText(const data::CropBox& b) {
  return std::to_string(b.top) + "," + std::to_string(b.left) + "," + std::to_string(b.height) + "," +
         std::to_string(b.width);
}

void expectOptionError(const std::function<void()>& body, const std::string& fragment) {
  try {
    body();
  } catch (const OptionError& error) {
    check(std::string(error.what()).find(fragment) != std::string::npos,
          "the error names the problem: got '" + std::string(error.what()) + "'");
    return;
  }
  throw Failure{"expected an OptionError containing '" + fragment + "'"};
}

void resizedCropBoxesFollowTimm() {
  double u[data::kResizedCropDraws];
  for (double& v : u) v = 0.5;
  u[20] = 0.99;  // the row: randint(0, 120 − 114) → 6
  // 120 × 200, scale (0.08, 1), ratio (3/4, 4/3): area 0.54 · 24000 = 12960, ratio ≈ 1, sides round(113.84) = 114.
  const data::CropBox first = data::resizedCropBox(120, 200, data::ResizedCropConfig{}, u);
  check(boxText(first) == "6,43,114,114",
        "the first attempt that fits, placed by the last two draws: " + boxText(first));
  // Sides of exactly 2.5 round to even (Python's round), not up.
  data::ResizedCropConfig quarter;
  quarter.scale = {0.25, 0.25};
  quarter.ratio = {1.0, 1.0};
  u[20] = u[21] = 0.0;
  check(boxText(data::resizedCropBox(5, 5, quarter, u)) == "0,0,2,2", "round(2.5) = 2");
  // No attempt fits a ratio of at least 2 at the whole area of a square: the centre at ratio 2.
  data::ResizedCropConfig wide;
  wide.scale = {1.0, 1.0};
  wide.ratio = {2.0, 3.0};
  check(boxText(data::resizedCropBox(10, 10, wide, u)) == "2,0,5,10", "the centre fallback at the lowest ratio");
  // An image wider than the largest ratio falls back to its centre at 4/3 (when every attempt fails).
  data::ResizedCropConfig whole;
  whole.scale = {1.0, 1.0};
  check(boxText(data::resizedCropBox(10, 40, whole, u)) == "0,13,10,13", "the centre fallback at the highest ratio");
}

void randAugmentArgumentsAreTimms() {
  check(near(data::randAugmentArgument("Rotate", 9, true), -27.0), "Rotate: 30° at magnitude 10, negated");
  check(near(data::randAugmentArgument("ShearX", 5, false), 0.15), "ShearX: 0.3 at 10");
  check(near(data::randAugmentArgument("TranslateYRel", 10, true), -0.45), "TranslateYRel: 0.45 at 10");
  check(data::randAugmentArgument("PosterizeIncreasing", 9, false) == 1, "4 − int(3.6) bits");
  check(data::randAugmentArgument("Posterize", 9, false) == 3, "int(3.6) bits");
  check(data::randAugmentArgument("SolarizeIncreasing", 9, false) == 26, "256 − int(230.4)");
  check(data::randAugmentArgument("Solarize", 10, false) == 256, "min(256, 256)");
  check(data::randAugmentArgument("SolarizeAdd", 10, false) == 110, "int(110)");
  check(near(data::randAugmentArgument("ColorIncreasing", 9, true), 1.0 - 0.9 * 0.9), "1 − 0.81");
  check(near(data::randAugmentArgument("BrightnessIncreasing", 10, true), 0.1), "kept at least 0.1");
  check(near(data::randAugmentArgument("Contrast", 5, true), 1.0), "0.5 · 1.8 + 0.1, never negated");
  check(data::randAugmentArgument("Invert", 7, true) == 0, "no argument");
  const data::RandAugmentConfig config = data::parseRandAugment("rand-m9-n3-mstd0.5-p0.7-mmax20-inc1");
  check(config.magnitude == 9 && config.numLayers == 3 && config.magnitudeStd == 0.5 && config.probability == 0.7 &&
            config.magnitudeMax == 20 && config.increasing && config.ops.size() == 15 &&
            config.ops[4] == "PosterizeIncreasing",
        "every section read");
  check(!data::parseRandAugment("rand-inc0").increasing, "inc0 keeps the plain set");
  check(std::isinf(data::parseRandAugment("rand-mstd200").magnitudeStd), "mstd above 100: uniform");
  expectOptionError([] { data::parseRandAugment("rand-m9-x3"); }, "section 'x3'");
  expectOptionError([] { data::parseRandAugment("auto-m9"); }, "starts with 'rand'");
  expectOptionError([] { data::parseRandAugment("rand-t3a"); }, "not offered");
}

void mixupTargetsAreSmoothedAndMixed() {
  const at::Tensor labels = at::tensor({0, 2}, at::TensorOptions().dtype(at::kLong));
  // ε = 0.3 over 3 classes: off 0.1, on 0.8; λ = 0.7 mixes each row with its mirror's.
  const at::Tensor t = data::mixupTargets(labels, 3, 0.7, 0.3);
  const at::Tensor expected = at::tensor({0.59, 0.1, 0.31, 0.31, 0.1, 0.59}, at::kDouble).view({2, 3});
  check(relativeError(t, expected) < 1e-6, "timm's mixup_target values");
  const at::Tensor sums = t.sum(1);
  check(relativeError(sums, at::ones({2}, at::kDouble)) < 1e-6, "rows sum to 1");
  data::MixupConfig none;
  none.mixupAlpha = none.cutmixAlpha = 0;
  expectOptionError([&] { none.validate(); }, "mixupAlpha > 0 or cutmixAlpha > 0");
}

void softCrossEntropyMatchesHardOnOneHotRows() {
  const at::Tensor logits = at::tensor({2.0, -1.0, 0.5, 0.0, 3.0, -2.0}, at::kFloat).view({2, 3});
  const at::Tensor hard = at::tensor({2, 1}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor oneHot = at::tensor({0.0, 0.0, 1.0, 0.0, 1.0, 0.0}, at::kFloat).view({2, 3});
  const double a = peft::crossEntropy(logits, hard).item<double>();
  const double b = peft::crossEntropy(logits, oneHot).item<double>();
  const at::Tensor z = logits.to(at::kDouble);
  const double reference = -(z.log_softmax(1)[0][2].item<double>() + z.log_softmax(1)[1][1].item<double>()) / 2.0;
  check(near(a, reference, 1e-6) && near(b, reference, 1e-6), "both equal the float64 cross-entropy");
  check(peft::targetClasses(oneHot).equal(hard), "the dominant label of a soft row is its largest entry");
}

// A CUDA batch is erased as the CPU one, draw for draw: the boxes' fills go over in one queued copy from pinned
// memory (tensor/to_device.h), holding the values the source had at the call.
void randomErasingOnCudaMatchesCpu() {
  skipUnless(at::hasCUDA(), "no CUDA device visible");
  const at::Tensor images = at::randn({16, 3, 32, 24}, at::kFloat);
  data::RandomErasingConfig config;
  config.prob = 0.75;
  config.count = 3;
  const auto erase = [&](const at::Tensor& batch) {
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(11);
    return data::randomErasing(batch, config, generator);
  };
  const data::RandomErasingResult onCpu = erase(images);
  const data::RandomErasingResult onCuda = erase(images.cuda());
  check(!onCpu.boxes.empty() && onCuda.boxes.size() == onCpu.boxes.size(), "the same boxes drawn");
  check(onCuda.images.cpu().equal(onCpu.images), "the same pixels erased with the same noise");
  at::Tensor host = at::arange(1 << 20, at::kFloat);
  const at::Tensor queued = toDeviceQueued(host, at::Device(at::kCUDA));
  host.fill_(-1);  // the source changed at once: the copy was staged before the call returned
  check(queued.cpu().equal(at::arange(1 << 20, at::kFloat)), "a queued copy holds the values at the call");
}

// On a GPU the resized crop's two passes use libtorch's float weights: each value within a level of Pillow's
// integer arithmetic (the CPU's) for bilinear, two for bicubic (its negative lobes carry a first pass's level of
// difference into the second up to 1.25-fold), with the same boxes.
void resizedCropOnCudaIsPillowWithinALevel() {
  skipUnless(at::hasCUDA(), "no CUDA device visible");
  const at::Tensor images = at::randint(0, 256, {24, 30, 26, 3}, at::kByte);
  for (const data::Interpolation interpolation : {data::Interpolation::Bilinear, data::Interpolation::Bicubic}) {
    data::ResizedCropConfig config;
    config.interpolation = interpolation;
    const auto crop = [&](const at::Tensor& batch) {
      return data::randomResizedCropFlip(batch, 17, config, true, at::make_generator<at::CPUGeneratorImpl>(5));
    };
    const data::ResizedCropResult onCpu = crop(images);
    const data::ResizedCropResult onCuda = crop(images.cuda());
    check(onCuda.boxes.equal(onCpu.boxes), "the same boxes");
    const at::Tensor difference = (onCuda.images.cpu().to(at::kInt) - onCpu.images.to(at::kInt)).abs();
    const int bound = interpolation == data::Interpolation::Bicubic ? 2 : 1;
    check(difference.max().item<int>() <= bound, "every value within " + std::to_string(bound) + " of Pillow's");
    check(difference.ne(0).to(at::kDouble).mean().item<double>() < 0.1, "nine values in ten exactly Pillow's");
  }
}

// What the epoch loop does to each batch before its step, on a GPU, with PyTorch's synchronisation check set to
// throw: a call that made the host wait for the device (a plain copy from pageable memory, an item()) fails here.
void batchPreparationOnCudaNeverWaits() {
#ifndef PACE_WITH_CUDA_KERNELS
  skipUnless(false, "built without the CUDA kernels");
#else
  skipUnless(at::hasCUDA(), "no CUDA device visible");
  const at::Device cuda(at::kCUDA);
  const at::Tensor stored = at::randint(0, 256, {32, 20, 20, 3}, at::kByte).to(cuda);
  const at::Tensor labels = at::arange(32, at::kLong).remainder(5);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(3);
  struct CheckSyncs {
    c10::cuda::SyncDebugMode before = c10::cuda::warning_state().get_sync_debug_mode();
    CheckSyncs() { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR); }
    ~CheckSyncs() { c10::cuda::warning_state().set_sync_debug_mode(before); }
  };
  at::Tensor prepared, targets;
  {
    const CheckSyncs check;
    const at::Tensor indices = at::randperm(32, generator, at::TensorOptions().dtype(at::kLong)).slice(0, 0, 8);
    at::Tensor batch = stored.index_select(0, toDeviceQueued(indices, cuda));
    batch = data::randomCropFlip(batch, 16, true, generator);
    at::Tensor images = data::toModelInput(batch, 24, data::Normalization{});
    data::RandomErasingConfig erasing;
    erasing.prob = 1;
    images = data::randomErasing(images, erasing, generator).images;
    data::MixupResult mixed = data::mixupBatch(images, labels.index_select(0, indices), 5, {}, generator);
    prepared = mixed.images;
    targets = toDeviceQueued(mixed.targets, cuda);
  }
  check(prepared.is_cuda() && prepared.sizes() == at::IntArrayRef({8, 3, 24, 24}) && targets.is_cuda(),
        "the batch and its targets are on the GPU");
  check(prepared.isfinite().all().item<bool>(), "finite inputs");
#endif
}

// A flip is one uniform draw an image, below 1/2, and leaves the generator after those draws: on every CPU alike
// (bernoulli_ draws differently with MKL on an Intel CPU; transforms.h).
void flipsAreOneUniformDrawAnImage() {
  const int64_t n = 64;
  const at::Tensor images = at::arange(n * 2, at::kByte).view({n, 1, 2, 1});  // each image's two columns differ
  at::Generator drawn = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Generator expected = at::make_generator<at::CPUGeneratorImpl>(7);
  const at::Tensor flipped = data::randomFlip(images, drawn);
  const at::Tensor uniforms = at::empty({n}, at::kDouble).uniform_(0.0, 1.0, expected);
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool wasFlipped = flipped[i][0][0][0].item<int64_t>() != images[i][0][0][0].item<int64_t>();
    check(wasFlipped == (uniforms[i].item<double>() < 0.5), "image " + std::to_string(i) + "'s flip is not its draw");
    count += wasFlipped;
  }
  check(count > 16 && count < 48, "about half the images flipped, got " + std::to_string(count) + " of 64");
  const double next = at::empty({1}, at::kDouble).uniform_(0.0, 1.0, drawn).item<double>();
  check(next == at::empty({1}, at::kDouble).uniform_(0.0, 1.0, expected).item<double>(),
        "the flips took other than one draw an image from the generator");
}

}  // namespace

TestList augmentTests() {
  return {
      {"random resized crop boxes follow timm (attempts, half-to-even, centre fallback)", resizedCropBoxesFollowTimm},
      {"RandAugment arguments and config strings are timm's", randAugmentArgumentsAreTimms},
      {"mixup targets are smoothed one-hot rows mixed by lambda", mixupTargetsAreSmoothedAndMixed},
      {"a flip is one uniform draw an image, below one half", flipsAreOneUniformDrawAnImage},
      {"the soft-target cross-entropy equals the hard one on one-hot rows", softCrossEntropyMatchesHardOnOneHotRows},
      {"random erasing of a CUDA batch equals the CPU one, its fills in one queued copy",
       randomErasingOnCudaMatchesCpu},
      {"resized crops on a GPU are Pillow's within a level, bilinear and bicubic",
       resizedCropOnCudaIsPillowWithinALevel},
      {"a batch's crop, flip, normalisation, erasing and mixup on a GPU never wait for it",
       batchPreparationOnCudaNeverWaits},
  };
}

}  // namespace pace::tests
