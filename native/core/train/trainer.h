#pragma once
// One training step as the PACE reference takes it: forward and losses (peft/pace_objective.h), backward, one
// AdamW step over the trainable parameters. The trainer's other jobs live beside it: the epoch loop
// (epoch.cpp), checkpoint state (trainer_state.cpp), evaluation and FP-distance (evaluate.h), bf16 weight copies
// (frozen_bf16.h), the dataset on the device (device_dataset.h), gradient norm and clipping (gradients.h).
#include <torch/optim/adamw.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/mixup.h"
#include "data/rand_augment.h"
#include "data/random_erasing.h"
#include "data/resized_crop.h"
#include "data/transforms.h"
#include "errors.h"
#include "io/safetensors.h"
#include "models/backbone.h"
#include "peft/pace_objective.h"
#include "tensor/precision.h"
#include "train/data_parallel.h"
#include "train/device_dataset.h"
#include "train/evaluate.h"
#include "train/frozen_bf16.h"
#include "train/fused_adamw.h"
#include "train/schedule.h"
#include "train/sharpness.h"
#include "train/step_graphs.h"

namespace pace::train {

struct OptimizerConfig {
  double lr = 1e-3;
  double weightDecay = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double clipGradNorm = 0;  // > 0: scale the gradients so their total L2 norm is at most this
  // The paper's comparisons (train/sharpness.h): SAM with radius samRho, or the gradient-norm penalty GP with
  // weight gradientPenalty and finite-difference radius gradientPenaltyRadius. 0: off; at most one of them.
  double samRho = 0;
  double gradientPenalty = 0;
  double gradientPenaltyRadius = 0.01;
  void validate() const;
  // Refuses a learning rate (named `name` in the message) this optimizer's float32 update cannot take.
  void checkLearningRate(double rate, const std::string& name) const;
  SharpnessConfig sharpness() const;
};

struct StepResult {
  double clsLoss = 0;
  double paceLoss = 0;
  double totalLoss = 0;
  int64_t correct = 0;  // top-1 hits of the logits the cross-entropy saw
  int64_t counted = 0;  // how many samples those were (half the batch on a lazy step)
  // Diagnostics, when asked for (negative otherwise): the trainable parameters' gradient norm, and the
  // FP-distance mean_batch Σ_classes (f − f₀)² between the model and the frozen backbone (adapters bypassed,
  // same head), both in evaluation mode, before the update.
  double gradNorm = -1;
  double fpDistance = -1;
  // With step graphs asked for: "captured", "replayed", "warmup", or "eager: <why>".
  std::string graph;
};

struct StepInputs {
  at::Tensor images;                        // float [B, 3, S, S]
  at::Tensor targets;                       // int64 [B]
  std::map<std::string, at::Tensor> noise;  // ε per linear to replay instead of drawing
  at::Tensor indices;                       // int64 [B] sample indices in the training set (the fast variant)
  bool diagnostics = false;
  std::string position;  // where the step is, for its errors ("at epoch 2, step 5"); empty: a single step
  // Data-parallel: this rank asks every rank to stop after this step (each rank learns it with the gradients).
  bool stopRequested = false;
};

// The error for a non-finite loss, naming where it happened and where to look (`hint`, in parentheses);
// `consequence` is appended when given.
DivergedError lossDiverged(double loss, const std::string& position, const std::string& hint,
                           const std::string& consequence = "");
// Where to look for a loss that diverged after `updatesBefore` updates (none: the learning rate played no part).
std::string divergenceHint(int64_t updatesBefore);

struct EpochOptions {
  int64_t batchSize = 64;
  int64_t epoch = 0;  // the shuffle of epoch e is a function of (shuffleSeed, e) alone
  uint64_t shuffleSeed = 0;
  bool diagnostics = false;
  // The learning-rate schedule, set before the epoch (once per epoch, as the reference) or before every step.
  std::optional<CosineSchedule> schedule;
  bool scheduleEachStep = false;
  // For uint8 datasets: how each batch becomes model input (see data/transforms.h).
  std::optional<data::Normalization> normalization;
  // Defined: the images are of their own sizes, packed [P, C] with these extents (data/packed_images.h); a random
  // crop or resized crop makes each batch's images one size.
  at::Tensor extents;
  int64_t augmentCrop = 0;  // > 0: random crops of this size (uint8 datasets)
  bool augmentFlip = false;
  // timm's stronger training augmentation, in its order (uint8 datasets but random erasing and mixup): a random
  // resized crop to the model's size instead of the crop (flipped with augmentFlip), RandAugment, random erasing of
  // each normalised image, then mixup/CutMix of the batch with soft targets. Every draw comes from the trainer's
  // augmentation generator.
  std::optional<data::ResizedCropConfig> resizedCrop;
  std::optional<data::RandAugmentConfig> randAugment;
  std::optional<data::RandomErasingConfig> randomErasing;
  std::optional<data::MixupConfig> mixup;
  // Whole-step CUDA graphs for the epoch's steps (step_graphs.h).
  StepGraphMode stepGraphs = StepGraphMode::Off;
  // The dataset may have changed since the trainer last copied it to the device (a fit's first epoch): writes
  // through a JavaScript view of its pixels do not reach libtorch's version counter.
  bool datasetChanged = false;
};

// Means over the epoch's steps (a partial last batch is dropped, as the reference's loader does).
struct EpochResult {
  int64_t steps = 0;
  int64_t samples = 0;  // samples the cross-entropy saw
  double clsLoss = 0, paceLoss = 0, totalLoss = 0;
  double trainAccuracy = 0;
  double gradNorm = -1, fpDistance = -1;
  double learningRate = -1;        // the rate of the epoch's first step (negative: the schedule was not touched)
  std::vector<double> stepLosses;  // each step's total loss, in order (what onBatch reported, none missing)
  std::vector<double> stepRates;   // the learning rate each step ran at, in order
  double seconds = 0;
  double communicationSeconds = 0;  // data-parallel: time in the gradient all-reduces
  StepGraphCounts graphs;           // how the steps ran (all eager when the epoch asked for no graphs)
  bool aborted = false;
};

struct BatchProgress {
  int64_t step = 0;
  int64_t steps = 0;
  double totalLoss = 0;
  double learningRate = 0;  // the rate the step ran at
};

class Trainer {
 public:
  // With a distributed group of several ranks the trainer is data-parallel (see data_parallel.h): rank 0's
  // trainable tensors are broadcast here, and each rank draws its own noise, drop-path and augmentation.
  Trainer(std::shared_ptr<models::Backbone> model, OptimizerConfig optimizer, peft::PaceConfig pace, uint64_t seed,
          Precision precision = Precision::Fp32, std::shared_ptr<distributed::Group> group = nullptr);

  StepResult step(const StepInputs& inputs, StepGraphMode graphs = StepGraphMode::Off);

  // One step's results left on the model's device (reading them waits for the device).
  struct DeviceStep {
    at::Tensor cls, pace, total;  // scalars
    at::Tensor correct;           // int64 scalar
    int64_t counted = 0;
    double gradNorm = -1, fpDistance = -1;
    bool stopAgreed = false;  // data-parallel: some rank asked to stop after this step
  };
  // With graphs other than Off, steps a graph can hold are captured and replayed (step_graphs.h).
  DeviceStep stepOnDevice(const StepInputs& inputs, StepGraphMode graphs = StepGraphMode::Off);
  Precision precision() const { return precision_; }
  // The settings this trainer was made with, defaults filled in (the learning rate before any schedule).
  const OptimizerConfig& optimizerConfig() const { return optimizerConfig_; }
  const peft::PaceObjective& pace() const { return pace_; }

  // One epoch over (images [N, 3, S, S], labels [N]) in shuffled batches of batchSize. `abort`, when set,
  // stops after the current step; `onBatch` is called after every step.
  EpochResult runEpoch(const at::Tensor& images, const at::Tensor& labels, const EpochOptions& options,
                       const std::atomic<bool>* abort, const std::function<void(const BatchProgress&)>& onBatch);

  // Everything a resumed run needs besides the model's frozen weights: trainable parameters, AdamW moments
  // and step counts, the generators, the iteration counter and the fast variant's logit history.
  // Data-parallel, this is collective (every rank calls it) and holds every rank's generator states.
  std::vector<NamedTensor> state() const;
  // Throws DivergedError unless every trainable parameter and AdamW moment is finite (state() checks it first).
  void checkFiniteState() const;
  void restoreState(const std::vector<NamedTensor>& state);
  int64_t iteration() const { return iteration_.load(); }
  int rank() const { return parallel_.rank(); }
  int worldSize() const { return parallel_.worldSize(); }

  const std::map<std::string, double>& sigmaPerLinear() const { return pace_.sigmaPerLinear(); }
  // The noise draws of the last step, by linear (replaying them reproduces the step).
  const std::map<std::string, at::Tensor>& lastNoise() const { return pace_.lastNoise(); }
  void setLearningRate(double lr);
  double learningRate() const;

 private:
  // The trainable parameters ("param.<name>") and their AdamW moments and step counts ("adamw.<name>.exp_avg",
  // ".exp_avg_sq", ".step"), as a checkpoint names them; the tensors themselves, not copies.
  std::vector<NamedTensor> parametersAndMoments() const;
  std::shared_ptr<models::Backbone> model_;
  std::vector<NamedTensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  FusedAdamW fusedAdamW_;  // the same update in one kernel per group where libtorch has it (CUDA ≥ 2.1, CPU ≥ 2.6)
  OptimizerConfig optimizerConfig_;
  peft::PaceObjective pace_;
  DataParallel parallel_;
  uint64_t seed_;  // of this rank's generators
  Precision precision_;
  // On the model's device (re-created from the seed if the model moves), so draws never cross devices.
  at::Generator noiseGenerator_;     // PACE noise draws
  at::Generator dropPathGenerator_;  // stochastic depth: separate, so replaying noise keeps the same masks
  at::Generator augmentGenerator_;   // crops, flips, RandAugment, mixup: on the CPU, where the draws are read
  FrozenBf16Copies frozenBf16_;
  DeviceDataset dataset_;
  StepGraphs graphs_;
  std::atomic<int64_t> iteration_{0};  // read from other threads while a step runs
  // After the model moved to another device: the generators re-created there, the optimizer's moments moved.
  void followModelDevice(const c10::Device& device);
  Precision backwardPrecision() const { return precision_ == Precision::Bf16 ? Precision::Fp32 : precision_; }
  // Which pass forwardBackward runs, for its loss check: none (a captured graph), the step's, or SAM's and GP's
  // second pass at the moved parameters.
  enum class LossCheck { None, Step, MovedParameters };
  // Forward and backward of the step's loss (`replay`: the noise to use instead of drawing). Checked, on the CPU
  // in one process, a non-finite loss throws before the backward, naming `position`.
  std::pair<peft::PaceLosses, at::Tensor> forwardBackward(const at::Tensor& images, const at::Tensor& targets,
                                                          const at::Tensor& indices,
                                                          const std::map<std::string, at::Tensor>& replay,
                                                          LossCheck check, const std::string& position);
  // Clipping and the AdamW update; with `fused` (FusedAdamW prepared) the parameters the kernel updated.
  std::vector<at::Tensor> clipAndUpdate(bool fused);
  // Why this step cannot run from a graph (empty: it can).
  std::string whyNotGraphed(const StepInputs& inputs, const c10::Device& device, StepGraphMode mode) const;
  // The step through `graphs_`, or nothing when it has to run eagerly (the reason is counted).
  std::optional<DeviceStep> graphedStep(const at::Tensor& images, const at::Tensor& targets, const StepInputs& inputs,
                                        StepGraphMode mode);
  // What a step graph records: the device work of one step on the entry's static buffers.
  void runStepProgram(StepGraphs::Entry& entry, bool fused);
  // After a capture: the warm-up's noise draws and gradients copied into the tensors the graph writes, where
  // lastNoise() and the parameters' gradients point now (a replay overwrites them with its own).
  void copyIntoCapturedOutputs(const std::map<std::string, at::Tensor>& noise, const std::vector<at::Tensor>& grads);
  // Data-parallel: the gradients and the step's losses become their means over the ranks; `movedTotal` (SAM/GP's
  // loss at the moved parameters, if any) is checked with them.
  void averageAcrossRanks(const StepInputs& inputs, const peft::PaceLosses& losses, const at::Tensor& total,
                          const at::Tensor& movedTotal, DeviceStep& result);
};

}  // namespace pace::train
