// The epoch loop: shuffled batches, augmentation, one step each, losses read one step late.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>

#include "data/packed_images.h"
#include "errors.h"
#include "tensor/to_device.h"
#include "train/evaluate.h"
#include "train/trainer.h"

namespace pace::train {

namespace {

// Refuses augmentation the dataset cannot take, before the first step; returns the colour RandAugment's affine
// operations fill with (timm: the normalisation mean × 255, rounded).
std::array<uint8_t, 3> checkAugmentation(const at::Tensor& images, const EpochOptions& options) {
  const bool packed = options.extents.defined();
  const bool pixels = images.scalar_type() == at::kByte && (images.dim() == 4 || packed);
  const int64_t channels = pixels ? images.size(images.dim() - 1) : 0;
  if (packed && !options.resizedCrop && options.augmentCrop < 1)
    throw OptionError("images of their own sizes need augment.crop or augment.resizedCrop to make batches of one size");
  if (options.resizedCrop) {
    options.resizedCrop->validate();
    if (!pixels) throw OptionError("a random resized crop needs a uint8 dataset [N, H, W, C]");
    if (options.augmentCrop > 0)
      throw OptionError("augment.crop and augment.resizedCrop are alternatives: the resized crop sets the size");
  }
  if (options.randAugment) {
    options.randAugment->validate();
    if (!pixels || (channels != 1 && channels != 3))
      throw OptionError("RandAugment needs a uint8 dataset [N, H, W, C] with C = 1 or 3");
  }
  if (options.mixup) options.mixup->validate();
  std::array<uint8_t, 3> fill{128, 128, 128};
  if (options.normalization) {
    for (int c = 0; c < 3; ++c)
      fill[c] = static_cast<uint8_t>(std::clamp(std::nearbyint(255.0 * options.normalization->mean[c]), 0.0, 255.0));
  }
  return fill;
}

// Refuses float images holding NaN or infinity, naming the first such sample: otherwise the fit would stop at some
// step with "the loss became nan", pointing at the learning rate. Checked in blocks, so no mask of the whole
// dataset is held.
void checkFiniteImages(const at::Tensor& images) {
  if (!images.is_floating_point()) return;
  constexpr int64_t kBlock = 256;
  int64_t first = -1, count = 0;
  for (int64_t start = 0; start < images.size(0); start += kBlock) {
    const at::Tensor block = images.narrow(0, start, std::min(kBlock, images.size(0) - start));
    const at::Tensor finite = at::isfinite(block).flatten(1).all(1);
    if (finite.all().item<bool>()) continue;
    const at::Tensor bad = finite.logical_not().nonzero().cpu();
    if (first < 0) first = start + bad[0][0].item<int64_t>();
    count += bad.size(0);
  }
  if (first >= 0)
    throw InputError("the dataset's images hold NaN or infinite values: sample " + std::to_string(first) +
                     (count > 1 ? " and " + std::to_string(count - 1) + " more" : std::string()) +
                     " (float images must be finite)");
}

}  // namespace

EpochResult Trainer::runEpoch(const at::Tensor& images, const at::Tensor& labels, const EpochOptions& options,
                              const std::atomic<bool>* abort,
                              const std::function<void(const BatchProgress&)>& onBatch) {
  const models::TrainingModeScope restore(*model_);  // evaluations and forwards after it run in the caller's mode
  std::optional<data::PackedImages> packed;
  if (options.extents.defined()) packed.emplace(images, options.extents);
  const int64_t n = packed ? packed->count() : images.size(0);
  if (options.batchSize < 1) throw OptionError("batchSize must be >= 1");
  if (labels.dim() != 1 || labels.size(0) != n)
    throw ShapeError("the dataset has " + std::to_string(n) + " images but " + std::to_string(labels.numel()) +
                     " labels");
  const int64_t steps = n / options.batchSize;
  // Data-parallel: batchSize is the global batch; rank r takes the r-th share of each one.
  const int64_t world = parallel_.worldSize();
  if (options.batchSize % world != 0)
    throw OptionError("batchSize " + std::to_string(options.batchSize) + " must be a multiple of the " +
                      std::to_string(world) + " processes training together (each runs an equal share)");
  const int64_t share = options.batchSize / world;
  const int64_t shareStart = share * parallel_.rank();
  // The lazy variant's consistency step takes the first half of the batch: data-parallel, each rank's share is its
  // part of the global first half followed by its part of the second, so that the ranks' halves make the global
  // one (contiguous shares would give each rank a half of its own: other rows than one process takes, and with
  // shares of one row no half at all).
  const bool halvesShares = world > 1 && pace_.config().active() && pace_.config().variant == peft::PaceVariant::Lazy;
  if (halvesShares && options.batchSize % (2 * world) != 0)
    throw OptionError("batchSize " + std::to_string(options.batchSize) + " must be a multiple of twice the " +
                      std::to_string(world) +
                      " processes training together under the lazy variant (each takes an equal part of the half "
                      "its consistency steps use)");
  if (steps == 0)
    throw InputError("the dataset has " + std::to_string(n) + " samples, fewer than one batch of " +
                     std::to_string(options.batchSize) + " (the last partial batch is dropped)");
  const std::array<uint8_t, 3> fill = checkAugmentation(images, options);
  if (options.datasetChanged) checkFiniteImages(images);
  at::Generator shuffle =
      at::make_generator<at::CPUGeneratorImpl>(options.shuffleSeed * 1000003ull + static_cast<uint64_t>(options.epoch));
  const at::Tensor order = at::randperm(n, shuffle, at::TensorOptions().dtype(at::kLong));
  const auto shareOf = [&](int64_t step) {
    const int64_t base = step * options.batchSize;
    if (!halvesShares) return order.slice(0, base + shareStart, base + shareStart + share);
    const int64_t part = share / 2, half = options.batchSize / 2, first = base + part * parallel_.rank();
    return at::cat({order.slice(0, first, first + part), order.slice(0, first + half, first + half + part)});
  };
  EpochResult result;
  if (options.schedule) {
    options.schedule->validate();
    if (!options.scheduleEachStep) {
      result.learningRate = options.schedule->forEpoch(options.epoch);
      setLearningRate(result.learningRate);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const auto device = model_->parameters().front().device();
  // RandAugment's pixel loops run on the CPU: its batches are cut there too (Pillow's exact resize), and go to the
  // device once, queued, as the step's input; from a dataset on the GPU each batch would come back and forth,
  // stopping the host twice a step.
  if (options.datasetChanged) dataset_.forget();
  const at::Tensor stored = options.randAugment ? images.cpu() : dataset_.on(images, device);
  if (packed) *packed = packed->withPixels(stored);
  const at::Tensor labelsOnCpu = labels.cpu();  // read by each step's range check without waiting for the device
  // Checked whole before the first step, so that data-parallel ranks, each seeing other samples, fail together.
  if (parallel_.active()) checkTargets(labelsOnCpu, n, model_->numClasses());
  // The sums stay on the device; each step's loss is read one step late, once the next step is queued, so
  // the host never waits for the device to run dry.
  at::Tensor sums = torch::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device));
  double gradNorms = 0, fpDistances = 0;
  struct Pending {
    int64_t step;
    at::Tensor total;
    int64_t updatesBefore;  // the trainer's updates before this step
    double learningRate;    // the rate it ran at
  };
  std::optional<Pending> pending;
  const auto positionOf = [&](int64_t step) {
    return "at epoch " + std::to_string(options.epoch) + ", step " + std::to_string(step);
  };
  const auto settle = [&]() {
    if (!pending) return;
    const double total = pending->total.item<double>();
    if (!std::isfinite(total)) {
      // Read a step late (a GPU's), the loss comes after its update and maybe the next step's: said, as the model in
      // memory is no longer the one before the bad step (the CPU's own check refuses the update instead).
      const int64_t taken = iteration() - pending->updatesBefore;
      throw lossDiverged(total, positionOf(pending->step), divergenceHint(pending->updatesBefore),
                         "the model in memory has taken " + std::to_string(taken) + " update" +
                             (taken == 1 ? "" : "s") + " since (this device's loss is read a step late)");
    }
    result.stepLosses.push_back(total);
    result.stepRates.push_back(pending->learningRate);
    if (onBatch) onBatch({pending->step + 1, steps, total, pending->learningRate});
    pending.reset();
  };
  parallel_.takeCommunicationSeconds();
  graphs_.takeCounts();  // what an earlier, failed epoch left
  for (int64_t s = 0; s < steps; ++s) {
    // Data-parallel, a stop is agreed through the next step's all-reduce, so every rank stops after the same step.
    if (!parallel_.active() && abort && abort->load()) {
      result.aborted = true;
      break;
    }
    if (options.schedule && options.scheduleEachStep) {
      const double lr = options.schedule->forStep(options.epoch * steps + s, steps);
      setLearningRate(lr);
      if (s == 0) result.learningRate = lr;
    }
    const double stepRate = learningRate();
    StepInputs inputs;
    inputs.indices = shareOf(s);
    at::Tensor batch;
    if (packed) {
      const std::vector<at::Tensor> chosen = packed->select(inputs.indices);
      batch = options.resizedCrop
                  ? data::randomResizedCropFlip(chosen, model_->imageSize(), *options.resizedCrop, options.augmentFlip,
                                                augmentGenerator_)
                        .images
                  : data::randomCropFlip(chosen, options.augmentCrop, options.augmentFlip, augmentGenerator_);
    } else {
      batch = stored.index_select(0, toDeviceQueued(inputs.indices, stored.device()));
      if (options.resizedCrop) {
        batch = data::randomResizedCropFlip(batch, model_->imageSize(), *options.resizedCrop, options.augmentFlip,
                                            augmentGenerator_)
                    .images;
      } else if (options.augmentCrop > 0 || options.augmentFlip) {
        // Flips alone keep the whole image (RandomHorizontalFlip): a window the size of the shorter side would crop
        // a non-square image at random, where evaluation resizes it whole.
        batch = options.augmentCrop > 0 || batch.size(1) == batch.size(2)
                    ? data::randomCropFlip(batch, options.augmentCrop > 0 ? options.augmentCrop : batch.size(1),
                                           options.augmentFlip, augmentGenerator_)
                    : data::randomFlip(batch, augmentGenerator_);
      }
    }
    if (options.randAugment) batch = data::randAugment(batch, *options.randAugment, fill, augmentGenerator_);
    inputs.images = batchInput(*model_, batch, options.normalization);
    if (options.randomErasing)
      inputs.images = data::randomErasing(inputs.images, *options.randomErasing, augmentGenerator_).images;
    inputs.targets = labelsOnCpu.index_select(0, inputs.indices);
    if (options.mixup) {
      // PACE's copies of the batch are made inside the forward, so they share this mixed batch.
      data::MixupResult mixed =
          data::mixupBatch(inputs.images, inputs.targets, model_->numClasses(), *options.mixup, augmentGenerator_);
      inputs.images = std::move(mixed.images);
      inputs.targets = std::move(mixed.targets);
    }
    inputs.diagnostics = options.diagnostics;
    inputs.position = positionOf(s);
    inputs.stopRequested = abort && abort->load();
    DeviceStep step;
    try {
      step = stepOnDevice(inputs, options.stepGraphs);
    } catch (const DivergedError&) {
      settle();  // the previous step's progress first
      throw;
    }
    sums.add_(at::stack({step.cls.to(at::kDouble), step.pace.to(at::kDouble), step.total.to(at::kDouble),
                         step.correct.to(at::kDouble)}));
    settle();
    pending = Pending{s, step.total, iteration() - 1, stepRate};
    ++result.steps;
    result.samples += step.counted;
    gradNorms += step.gradNorm;
    fpDistances += step.fpDistance;
    if (step.stopAgreed) {
      result.aborted = true;
      break;
    }
  }
  settle();
  result.communicationSeconds = parallel_.takeCommunicationSeconds();
  result.graphs = graphs_.takeCounts();
  if (result.steps > 0) {
    const at::Tensor totals = sums.cpu();
    double* sum = totals.data_ptr<double>();
    if (parallel_.active()) {
      // The losses are already means over the ranks; the hits, sample counts and diagnostics are summed.
      at::Tensor counts = torch::tensor({sum[3], static_cast<double>(result.samples), gradNorms, fpDistances},
                                        at::TensorOptions().dtype(at::kDouble));
      parallel_.sum(counts, "summing the epoch's accuracy counts at epoch " + std::to_string(options.epoch));
      const double* summed = counts.data_ptr<double>();
      sum[3] = summed[0];
      result.samples = static_cast<int64_t>(summed[1]);
      gradNorms = summed[2] / static_cast<double>(world);
      fpDistances = summed[3] / static_cast<double>(world);
    }
    const double count = static_cast<double>(result.steps);
    result.clsLoss = sum[0] / count;
    result.paceLoss = sum[1] / count;
    result.totalLoss = sum[2] / count;
    result.trainAccuracy = sum[3] / static_cast<double>(result.samples);
    if (options.diagnostics) {
      result.gradNorm = gradNorms / count;
      result.fpDistance = fpDistances / count;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace pace::train
