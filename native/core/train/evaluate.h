#pragma once
// Measuring a model: accuracy over a dataset, and how far it has moved from its pretrained backbone.
#include <atomic>
#include <optional>
#include <string>

#include "data/transforms.h"
#include "distributed/group.h"
#include "models/backbone.h"
#include "tensor/precision.h"

namespace pace::train {

struct EvaluationOptions {
  int64_t batchSize = 64;
  std::optional<data::Normalization> normalization;  // for uint8 images
  // Defined: the images are of their own sizes, packed [P, C] with these extents (data/packed_images.h), and each
  // is evaluated on its centre crop at the model's size (torchvision's CenterCrop, the reference's evaluation).
  at::Tensor extents;
  // Only these classes (int64 indices) take part in the argmax, top-5 and softmax, as ImageNet-A's and -R's 200
  // classes of a 1,000-class head are evaluated; every label must be one of them. Undefined: all classes.
  at::Tensor classSubset;
  Precision precision = Precision::Fp32;
  // Collective: each rank of the group evaluates its contiguous share and every rank gets the whole set's figures.
  distributed::Group* shardAcross = nullptr;
  // Set from another thread, it stops the evaluation before its next batch (the result then says `stopped`).
  // A sharded evaluation does not read it: one rank leaving would strand the others in the all-reduce.
  const std::atomic<bool>* stop = nullptr;
};

struct EvaluationResult {
  int64_t samples = 0;
  int64_t classes = 0;  // the classes that took part (the subset's size, or the head's)
  double top1 = 0;
  double top5 = -1;      // only with at least 5 classes
  at::Tensor confusion;  // int64 [classes, classes]: row = true class, column = predicted
  double loss = 0;       // mean cross-entropy
  bool stopped = false;  // options.stop ended it early: the figures are not the set's and are left empty
};

// Top-1/top-5 accuracy, per-class counts and mean loss of an eval-mode model over a dataset, in batches.
EvaluationResult evaluate(models::Backbone& model, const at::Tensor& images, const at::Tensor& labels,
                          const EvaluationOptions& options);

// The FP-distance mean_batch Σ_classes (f − f₀)² between the model and its frozen backbone (adapters bypassed,
// same head), both in evaluation mode; leaves the model in training mode.
double fpDistance(models::Backbone& model, const at::Tensor& images);

// A batch of stored images as model input: float images pass through; uint8 ones are converted.
at::Tensor batchInput(const models::Backbone& model, const at::Tensor& images,
                      const std::optional<data::Normalization>& normalization);

// How an index vector is named in errors: "indices must be an int64 tensor [B] of <what>" and
// "must lie in [0, N)<limit>".
struct IndexKind {
  std::string name;
  std::string what;
  std::string limit;
};
// Throws unless `indices` is an int64 vector of `batch` entries in [0, limit).
void checkIndices(const at::Tensor& indices, int64_t batch, int64_t limit, const IndexKind& kind);
// Throws unless targets is an int64 vector of `batch` class indices in [0, numClasses).
void checkTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses);
// A training step's targets: class indices as checkTargets, or soft targets, floating point [batch, numClasses].
void checkTrainingTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses);

}  // namespace pace::train
