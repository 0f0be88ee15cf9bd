#include "train/evaluate.h"

#include <torch/nn/functional/loss.h>

#include <limits>
#include <string>
#include <vector>

#include "data/packed_images.h"
#include "errors.h"
#include "peft/pace.h"
#include "tensor/dtype.h"
#include "tensor/to_device.h"

namespace pace::train {

void checkIndices(const at::Tensor& indices, int64_t batch, int64_t limit, const IndexKind& kind) {
  if (indices.scalar_type() != at::kLong || indices.dim() != 1 || indices.size(0) != batch)
    throw ShapeError(kind.name + " must be an int64 tensor [" + std::to_string(batch) + "] of " + kind.what + "; got " +
                     dtypeName(indices.scalar_type()) + " " + shapeToString(indices.sizes().vec()));
  if (batch == 0) return;
  const int64_t low = indices.min().item<int64_t>(), high = indices.max().item<int64_t>();
  if (low < 0 || high >= limit)
    throw InputError(kind.name + " must lie in [0, " + std::to_string(limit) + ")" + kind.limit + "; got values from " +
                     std::to_string(low) + " to " + std::to_string(high));
}

void checkTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses) {
  checkIndices(targets, batch, numClasses, {"targets", "class indices", ""});
}

void checkTrainingTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses) {
  if (targets.dim() != 2) return checkTargets(targets, batch, numClasses);
  if (!at::isFloatingType(targets.scalar_type()) || targets.size(0) != batch || targets.size(1) != numClasses)
    throw ShapeError("soft targets must be a floating-point tensor [" + std::to_string(batch) + ", " +
                     std::to_string(numClasses) + "] (a row per sample, one entry per class); got " +
                     dtypeName(targets.scalar_type()) + " " + shapeToString(targets.sizes().vec()));
}

at::Tensor batchInput(const models::Backbone& model, const at::Tensor& images,
                      const std::optional<data::Normalization>& normalization) {
  if (images.scalar_type() != at::kByte) return images;
  if (!normalization) throw OptionError("a uint8 image dataset needs its normalisation (mean and std)");
  return data::toModelInput(images, model.imageSize(), *normalization);
}

namespace {

// The logits' offsets that keep only the subset: 0 on its classes, −∞ elsewhere (undefined: no subset).
at::Tensor subsetOffsets(const at::Tensor& subset, const at::Tensor& labels, int64_t classes) {
  if (!subset.defined()) return {};
  if (subset.scalar_type() != at::kLong || subset.dim() != 1 || subset.numel() == 0)
    throw ShapeError("the class subset must be a non-empty int64 vector of class indices");
  const int64_t low = subset.min().item<int64_t>(), high = subset.max().item<int64_t>();
  if (low < 0 || high >= classes)
    throw InputError("the class subset must lie in [0, " + std::to_string(classes) + "); got classes from " +
                     std::to_string(low) + " to " + std::to_string(high));
  at::Tensor member = torch::zeros({classes}, torch::kBool).index_fill_(0, subset, true);
  const at::Tensor sorted = std::get<0>(subset.sort());
  if (subset.numel() > 1 && sorted.slice(0, 1).eq(sorted.slice(0, 0, -1)).any().item<bool>())
    throw InputError("the class subset lists a class twice");
  const at::Tensor outside = member.logical_not().index_select(0, labels.cpu()).nonzero();
  if (outside.numel() > 0) {
    const int64_t sample = outside[0][0].item<int64_t>();
    throw InputError("sample " + std::to_string(sample) + ": label " + std::to_string(labels[sample].item<int64_t>()) +
                     " is not among the " + std::to_string(subset.numel()) + " classes of the subset");
  }
  return torch::full({classes}, -std::numeric_limits<float>::infinity()).masked_fill_(member, 0.0f);
}

// A sharded evaluation reads one set across the ranks: each must hold the same one (its size and a digest of its
// labels), or each rank would count another set's share and report figures of no set at all. Every rank sees every
// rank's pair, so all refuse together.
void checkSameSetOnEveryRank(distributed::Group& group, int64_t n, const at::Tensor& labels) {
  const at::Tensor positions = torch::arange(1, n + 1, torch::kLong);
  const int64_t digest = n ? (labels.to(torch::kLong).cpu() * positions).sum().item<int64_t>() : 0;
  const at::Tensor mine = torch::tensor({n, digest}, torch::kLong).to(group.device());
  const std::vector<at::Tensor> all = group.allGather(mine, "comparing the evaluation sets");
  std::string sizes;
  bool same = true;
  for (size_t r = 0; r < all.size(); ++r) {
    const at::Tensor pair = all[r].cpu();
    const int64_t size = pair[0].item<int64_t>();
    same = same && size == n && pair[1].item<int64_t>() == digest;
    sizes += (r ? ", " : "") + std::string("rank ") + std::to_string(r) + ": " + std::to_string(size);
  }
  if (!same)
    throw DistributedError("rank " + std::to_string(group.rank()) + " of " + std::to_string(group.worldSize()) +
                           ": a data-parallel evaluation shards one set across the ranks, and they were given " +
                           "different sets (" + sizes + " samples, or other labels): give every rank the whole set");
}

}  // namespace

EvaluationResult evaluate(models::Backbone& model, const at::Tensor& images, const at::Tensor& labels,
                          const EvaluationOptions& options) {
  std::optional<data::PackedImages> packed;
  if (options.extents.defined()) packed.emplace(images, options.extents);
  const int64_t n = packed ? packed->count() : images.size(0), classes = model.numClasses();
  if (classes < 1) throw StateError("evaluation needs a classifier head");
  const int64_t batchSize = options.batchSize;
  if (batchSize < 1) throw OptionError("batchSize must be >= 1");
  checkTargets(labels, n, classes);
  distributed::Group* shardAcross = options.shardAcross;
  const auto& normalization = options.normalization;
  torch::NoGradGuard noGrad;
  const models::TrainingModeScope restore(model);
  model.train(false);
  const auto device = model.parameters().front().device();
  const at::Tensor offsets = [&] {
    const at::Tensor cpu = subsetOffsets(options.classSubset, labels, classes);
    return cpu.defined() ? cpu.to(device) : cpu;
  }();
  const int64_t taking = options.classSubset.defined() ? options.classSubset.numel() : classes;
  // Counts and sums stay on the model's device and are read once at the end: on a GPU a read per batch
  // would wait for each batch to finish before the next is queued.
  const auto counts = torch::TensorOptions().dtype(torch::kLong).device(device);
  at::Tensor confusion = torch::zeros({classes * classes}, counts);
  at::Tensor top1 = torch::zeros({}, counts), top5 = torch::zeros({}, counts), nonFinite = torch::zeros({}, counts);
  at::Tensor loss = torch::zeros({}, counts.dtype(torch::kDouble));
  int64_t first = 0, last = n;
  if (shardAcross) {
    checkSameSetOnEveryRank(*shardAcross, n, labels);
    first = n * shardAcross->rank() / shardAcross->worldSize();
    last = n * (shardAcross->rank() + 1) / shardAcross->worldSize();
  }
  const std::atomic<bool>* stop = shardAcross ? nullptr : options.stop;
  for (int64_t begin = first; begin < last; begin += batchSize) {
    if (stop && stop->load()) {
      EvaluationResult stopped;
      stopped.stopped = true;
      return stopped;
    }
    const int64_t end = std::min(last, begin + batchSize);
    const at::Tensor stored = packed ? packed->centerCrops(begin, end, model.imageSize()) : images.slice(0, begin, end);
    const at::Tensor x = toDeviceQueued(batchInput(model, stored, normalization), device);
    const at::Tensor y = toDeviceQueued(labels.slice(0, begin, end), device);
    at::Tensor logits;
    {
      // Per batch: TF32 is one switch for the process, and work on other models wanting it set otherwise waits
      // only for a batch, not for the whole evaluation (nor for anything that waits behind it).
      const PrecisionScope arithmetic(options.precision, device.type());
      logits = model.forward(x).to(at::kFloat);
    }
    // Counted on the device, read once at the end: a NaN row would otherwise count as a prediction (argmax takes
    // NaN for the largest), outside a class subset too.
    nonFinite.add_(logits.isfinite().logical_not().any(1).sum());
    if (offsets.defined()) logits = logits + offsets;  // exp(−∞) = 0: the softmax and argmax see the subset only
    loss.add_(torch::nn::functional::cross_entropy(
                  logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .to(torch::kDouble));
    // As timm's accuracy(): top-1 is the first of the top 5, so a tie never counts at top-1 and not at top-5.
    at::Tensor predicted;
    if (taking >= 5) {
      const at::Tensor best = std::get<1>(logits.topk(5, 1));
      predicted = best.select(1, 0);
      top5.add_(best.eq(y.unsqueeze(1)).any(1).sum());
    } else {
      predicted = logits.argmax(1);
    }
    top1.add_(predicted.eq(y).sum());
    confusion.index_add_(0, y * classes + predicted, torch::ones({end - begin}, counts));
  }
  if (shardAcross) {
    // One all-reduce of every count and the loss sum (float64 holds counts exactly up to 2^53).
    std::vector<at::Tensor> one{
        at::cat({confusion.to(torch::kDouble), top1.reshape(1).to(torch::kDouble), top5.reshape(1).to(torch::kDouble),
                 loss.reshape(1), nonFinite.reshape(1).to(torch::kDouble)})
            .to(shardAcross->device())};
    shardAcross->allReduceSum(one, "summing the evaluation's counts");
    const at::Tensor summed = one[0];
    confusion = summed.narrow(0, 0, classes * classes).to(torch::kLong);
    top1 = summed[classes * classes].to(torch::kLong);
    top5 = summed[classes * classes + 1].to(torch::kLong);
    loss = summed[classes * classes + 2];
    nonFinite = summed[classes * classes + 3].to(torch::kLong);
  }
  if (const int64_t bad = nonFinite.item<int64_t>(); bad > 0) {
    throw DivergedError("the model's logits are not finite (NaN or infinite) for " + std::to_string(bad) + " of the " +
                        std::to_string(n) +
                        " samples: a NaN in the images or in the weights; the evaluation's figures would mean nothing");
  }
  EvaluationResult result;
  result.samples = n;
  result.classes = taking;
  result.confusion = confusion.view({classes, classes}).cpu();
  result.top1 = n ? static_cast<double>(top1.item<int64_t>()) / n : 0;
  if (taking >= 5) result.top5 = n ? static_cast<double>(top5.item<int64_t>()) / n : 0;
  result.loss = n ? loss.item<double>() / n : 0;
  return result;
}

double fpDistance(models::Backbone& model, const at::Tensor& images) {
  torch::NoGradGuard noGrad;
  model.train(false);
  const at::Tensor tuned = model.forward(images);
  models::ForwardContext pretrained;
  pretrained.adaptersBypassed = true;
  const at::Tensor frozen = model.forward(images, pretrained);
  model.train(true);
  return peft::consistencyLoss(tuned, frozen).item<double>();
}

}  // namespace pace::train
