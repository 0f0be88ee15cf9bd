#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "errors.h"
#include "peft/cross_entropy.h"
#include "peft/setup.h"
#include "tensor/cpu_bf16.h"
#include "tensor/dtype.h"
#include "tensor/to_device.h"
#include "train/gradients.h"
#include "train/optimizer_placement.h"

namespace pace::train {

void OptimizerConfig::validate() const {
  if (!(weightDecay >= 0)) throw OptionError("optimizer.weightDecay must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw OptionError("optimizer.betas must be in [0, 1)");
  checkLearningRate(lr, "optimizer.lr");
  if (!(eps > 0 && eps <= std::numeric_limits<float>::max()))
    throw OptionError("optimizer.eps must be > 0 and at most 3.4e38 (the largest float32)");
  if (!(clipGradNorm >= 0)) throw OptionError("optimizer.clipGradNorm must be >= 0");
  if (!(samRho >= 0)) throw OptionError("optimizer.samRho must be >= 0");
  if (!(gradientPenalty >= 0)) throw OptionError("optimizer.gradientPenalty must be >= 0");
  if (!(gradientPenaltyRadius > 0)) throw OptionError("optimizer.gradientPenaltyRadius must be > 0");
  if (samRho > 0 && gradientPenalty > 0)
    throw OptionError("optimizer.samRho and optimizer.gradientPenalty are alternatives: set one of them");
}

// AdamW's update scalars are float32 in libtorch: a larger one would fail there with a message naming no option.
void OptimizerConfig::checkLearningRate(double rate, const std::string& name) const {
  if (!(rate >= 0)) throw OptionError(name + " must be >= 0");
  constexpr double kLargest = std::numeric_limits<float>::max();
  const auto shown = [](double value) {
    std::ostringstream out;
    out << std::setprecision(3) << value;
    return out.str();
  };
  if (!(rate / (1 - beta1) <= kLargest))
    throw OptionError(name + " " + shown(rate) + " is too large: AdamW's first update moves a parameter by up to " +
                      name + " / (1 - betas[0]) = " + shown(rate / (1 - beta1)) +
                      ", past the largest float32 (3.4e38)");
  if (!(rate * weightDecay <= kLargest))
    throw OptionError(name + " × optimizer.weightDecay = " + shown(rate * weightDecay) +
                      " is past the largest float32 (3.4e38), which AdamW's decay factor 1 - " + name +
                      " × weightDecay must fit");
}

SharpnessConfig OptimizerConfig::sharpness() const {
  if (samRho > 0) return {samRho, 1.0};
  if (gradientPenalty > 0) return {gradientPenaltyRadius, gradientPenalty / gradientPenaltyRadius};
  return {};
}

DivergedError lossDiverged(double loss, const std::string& position, const std::string& hint,
                           const std::string& consequence) {
  // A NaN's sign bit means nothing; std::to_string would write "-nan" for the NaNs libtorch 2.x makes.
  return DivergedError("the loss became " + (std::isnan(loss) ? std::string("nan") : std::to_string(loss)) +
                       (position.empty() ? "" : " " + position) + " (" + hint + ")" +
                       (consequence.empty() ? "" : "; " + consequence));
}

std::string divergenceHint(int64_t updatesBefore) {
  return updatesBefore == 0 ? "before any update: check the data, pace.sigma and pace.lambda"
                            : "lower the learning rate or check the data";
}

namespace {

constexpr uint64_t kDropPathSalt = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kAugmentSalt = 0xc2b2ae3d27d4eb4full;
constexpr uint64_t kRankSalt = 0x165667b19e3779f9ull;  // rank 0 keeps the seed: one process is unchanged

at::Generator seededGenerator(const c10::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator generator = at::globalContext().defaultGenerator(device).clone();
  generator.set_current_seed(seed);
  return generator;
}

// How many of the logits the cross-entropy saw put their largest value on the target's (dominant) class.
at::Tensor topOneHits(const peft::PaceLosses& losses) {
  return losses.logits.detach().argmax(1).eq(peft::targetClasses(losses.targets)).sum();
}

// The model, checked to be trainable before anything else is built from it.
models::Backbone& trainableModel(const std::shared_ptr<models::Backbone>& model) {
  if (model->numClasses() < 1)
    throw StateError("training needs a classifier head: create the model with numClasses >= 1");
  return *model;
}

// What every rank of a data-parallel run must share, as text: the trainable parameters, the optimizer's and
// PACE's options, the seed (before each rank's salt) and the precision.
std::vector<DataParallel::Setting> settingsOf(models::Backbone& model, const OptimizerConfig& optimizer,
                                              const peft::PaceConfig& pace, uint64_t seed, Precision precision) {
  std::ostringstream parameters, optimizerText, paceText;
  optimizerText << std::setprecision(17);  // values that differ past a float's usual six digits still differ
  paceText << std::setprecision(17);
  const std::vector<NamedTensor> trainable = peft::trainableParameters(model);
  for (const auto& named : trainable) parameters << named.name << shapeToString(named.tensor.sizes().vec()) << ' ';
  optimizerText << "lr " << optimizer.lr << ", weightDecay " << optimizer.weightDecay << ", betas " << optimizer.beta1
                << '/' << optimizer.beta2 << ", eps " << optimizer.eps << ", clipGradNorm " << optimizer.clipGradNorm
                << ", samRho " << optimizer.samRho << ", gradientPenalty " << optimizer.gradientPenalty << '/'
                << optimizer.gradientPenaltyRadius;
  paceText << "sigma " << pace.sigma << ", lambda " << pace.lambda << ", blockStart "
           << pace.blockStart.value_or(model.defaultNoiseBlockStart()) << ", noise " << peft::nameOf(pace.kind) << '/'
           << peft::nameOf(pace.shape) << '/' << peft::nameOf(pace.schedule) << '/' << peft::nameOf(pace.noiseOn)
           << ", variant " << peft::nameOf(pace.variant) << ", lazyInterval " << pace.lazyInterval << ", datasetSize "
           << pace.datasetSize << ", adapterL1 " << pace.adapterL1 << ", copies " << pace.copies;
  return {{"trainable parameters", parameters.str()},
          {"optimizer options", optimizerText.str()},
          {"PACE options", paceText.str()},
          {"seed", std::to_string(seed)},
          {"precision", std::to_string(static_cast<int>(precision))}};
}

// Collective, before the trainer checks its own options: ranks given different models or trainers stop together
// naming the first difference, rather than one failing a check of its own while the others wait in the broadcast
// (different adapters aborted inside Gloo; a different learning rate trained on with each rank its own way).
std::shared_ptr<models::Backbone> agreedAcrossRanks(std::shared_ptr<models::Backbone> model,
                                                    const OptimizerConfig& optimizer, const peft::PaceConfig& pace,
                                                    uint64_t seed, Precision precision,
                                                    const std::shared_ptr<distributed::Group>& group) {
  if (group) DataParallel(group).agree(settingsOf(*model, optimizer, pace, seed, precision), "models or trainers");
  return model;
}

// A step's all-reduces are named by its place in the fit ("at epoch 2, step 7"), or as a lone step's.
std::string stepPosition(const StepInputs& inputs) {
  return inputs.position.empty() ? std::string("of a step") : inputs.position;
}

// Where SAM/GP's second pass runs, for its divergence message, and what to change when its loss is not finite.
std::string movedPosition(const std::string& position) {
  const std::string movedTo = "at the parameters SAM/GP moved to";
  return position.empty() ? movedTo : position + ", " + movedTo;
}
constexpr const char* kMovedTooFar = "lower optimizer.samRho or optimizer.gradientPenaltyRadius, the distance moved";

}  // namespace

Trainer::Trainer(std::shared_ptr<models::Backbone> model, OptimizerConfig optimizer, peft::PaceConfig pace,
                 uint64_t seed, Precision precision, std::shared_ptr<distributed::Group> group)
    : model_(agreedAcrossRanks(std::move(model), optimizer, pace, seed, precision, group)),
      optimizerConfig_((optimizer.validate(), optimizer)),
      pace_(trainableModel(model_), std::move(pace)),
      parallel_(std::move(group)),
      seed_(seed ^ (static_cast<uint64_t>(parallel_.rank()) * kRankSalt)),
      precision_(precision),
      noiseGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed_)),
      dropPathGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed_ ^ kDropPathSalt)),
      augmentGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed_ ^ kAugmentSalt)) {
  if (optimizerConfig_.sharpness().active() && pace_.config().active() &&
      pace_.config().variant == peft::PaceVariant::Fast)
    throw OptionError(
        "SAM and the gradient penalty take a second gradient of the same loss, which the fast PACE "
        "variant's logit history does not allow; use the pace, lazy, fpa or noise variant");
  trainable_ = peft::trainableParameters(*model_);
  if (trainable_.empty()) throw StateError("the model has no trainable parameters: call addAdapters() first");
  if (precision_ == Precision::Bf16 && model_->parameters().front().device().is_cpu())
    requireCpuBf16ProductsSumInFloat();
  const auto options = [&](double weightDecay) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(optimizer.lr)
                                                            .betas({optimizer.beta1, optimizer.beta2})
                                                            .eps(optimizer.eps)
                                                            .weight_decay(weightDecay));
  };
  // Adapters and head decay alike, as the PACE reference's AdamW does; full fine-tuning as timm's
  // create_optimizer_v2 does, sparing biases, 1-D parameters (norms) and what the model's no_weight_decay() names.
  const bool full = trainable_.size() == model_->parameters().size();
  std::vector<at::Tensor> decayed, spared;
  for (const auto& named : trainable_) {
    // (timm's "name ends in .bias" adds nothing here: every bias is 1-D)
    const bool spare = full && (named.tensor.dim() <= 1 || model_->exemptFromWeightDecay(named.name));
    (spare ? spared : decayed).push_back(named.tensor);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decayed.empty()) groups.emplace_back(decayed, options(optimizer.weightDecay));
  if (!spared.empty()) groups.emplace_back(spared, options(0));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, *options(optimizer.weightDecay));
  followModelDevice(model_->parameters().front().device());
  parallel_.broadcastParameters(trainable_);
}

void Trainer::followModelDevice(const c10::Device& device) {
  if (noiseGenerator_.device() == device) return;
  noiseGenerator_ = seededGenerator(device, seed_);
  dropPathGenerator_ = seededGenerator(device, seed_ ^ kDropPathSalt);
  followParameterDevices(*optimizer_);
  graphs_.invalidate();  // they were captured with the old generators
}

std::pair<peft::PaceLosses, at::Tensor> Trainer::forwardBackward(const at::Tensor& images, const at::Tensor& targets,
                                                                 const at::Tensor& indices,
                                                                 const std::map<std::string, at::Tensor>& replay,
                                                                 LossCheck check, const std::string& position) {
  models::Backbone& model = *model_;
  const auto device = images.device();
  std::optional<FrozenBf16Copies::Swap> frozenInBf16;
  if (precision_ == Precision::Bf16) frozenInBf16.emplace(frozenBf16_);
  peft::PaceLosses losses;
  {
    const PrecisionScope forward(precision_, device.type());
    losses =
        pace_.losses(model, images, targets, indices, replay, noiseGenerator_, dropPathGenerator_, iteration_.load());
  }
  const at::Tensor total = losses.cls + pace_.config().lambda * losses.consistency + losses.sparsity;
  if (check != LossCheck::None && device.is_cpu() && !parallel_.active()) {
    // On the CPU the loss is already computed, so reading it costs nothing: a non-finite loss stops the step
    // before the update, leaving the parameters and the optimizer as they were. (On a GPU the read would wait
    // for the device every step; there the epoch loop reads each loss one step late instead.)
    const double value = total.item<double>();
    if (!std::isfinite(value)) {
      pace_.forgetLastLogits();  // the fast variant's history, too, is as before
      throw lossDiverged(value, position,
                         check == LossCheck::MovedParameters ? kMovedTooFar : divergenceHint(iteration_.load()),
                         "the parameters are as before this step");
    }
  }
  // Backward: TF32 as asked; bf16 products were fixed by the forward's casts.
  const PrecisionScope backward(backwardPrecision(), device.type());
  total.backward();
  return {losses, total};
}

std::vector<at::Tensor> Trainer::clipAndUpdate(bool fused) {
  if (optimizerConfig_.clipGradNorm > 0) clipGradientNorm(trainable_, optimizerConfig_.clipGradNorm);
  if (fused) return fusedAdamW_.launch(*optimizer_);
  optimizer_->step();
  return {};
}

Trainer::DeviceStep Trainer::stepOnDevice(const StepInputs& inputs, StepGraphMode graphs) {
  models::Backbone& model = *model_;
  const auto device = model.parameters().front().device();
  followModelDevice(device);
  const at::Tensor images = toDeviceQueued(inputs.images, device);
  model.checkImages(images);
  const int64_t batch = images.size(0);
  checkTrainingTargets(inputs.targets, batch, model.numClasses());
  const at::Tensor targets = toDeviceQueued(inputs.targets, device);
  pace_.checkReplay(inputs.noise);
  const peft::PaceConfig& pace = pace_.config();
  if (pace.active() && pace.variant == peft::PaceVariant::Fast) {
    if (!inputs.indices.defined())
      throw OptionError("the fast PACE variant needs each sample's index in the training set");
    checkIndices(inputs.indices, batch, pace.datasetSize,
                 {"indices", "sample indices in the training set", " (pace.datasetSize)"});
  }
  if (graphs != StepGraphMode::Off) {
    if (auto graphed = graphedStep(images, targets, inputs, graphs)) return *std::move(graphed);
  }

  DeviceStep result;
  if (inputs.diagnostics) result.fpDistance = fpDistance(model, images);
  model.train(true);
  optimizer_->zero_grad();
  if (precision_ == Precision::Bf16 && frozenBf16_.refresh(model)) graphs_.invalidate();
  const SharpnessConfig sharpness = optimizerConfig_.sharpness();
  const at::Tensor dropPathState = sharpness.active() ? dropPathGenerator_.get_state() : at::Tensor();
  at::Tensor movedTotal;  // SAM/GP: the loss at the moved parameters
  const auto [losses, total] =
      forwardBackward(images, targets, inputs.indices, inputs.noise, LossCheck::Step, inputs.position);
  if (sharpness.active()) {
    // SAM / GP: the gradient again at θ + r·g/‖g‖, with the same noise draws and drop-path masks. Data-parallel,
    // g is the whole batch's (averaged over the ranks first), as in one process: each rank's own would move each
    // rank's parameters elsewhere.
    if (parallel_.active()) {
      parallel_.averageGradients(trainable_, at::empty({0}, at::kFloat),
                                 stepPosition(inputs) + " (the gradient the sharpness step moves along)");
    }
    const std::map<std::string, at::Tensor> draws = pace_.lastNoise();
    SharpnessStep moved(trainable_, sharpness);
    optimizer_->zero_grad();
    dropPathGenerator_.set_state(dropPathState);
    // Its loss checked too (on the CPU, where that is free): a non-finite one would put NaN gradients into the
    // update. Thrown, `moved` puts the parameters back.
    movedTotal = forwardBackward(images, targets, inputs.indices, draws, LossCheck::MovedParameters,
                                 movedPosition(inputs.position))
                     .second;
    moved.finish();
  }
  {
    const PrecisionScope update(backwardPrecision(), device.type());
    if (parallel_.active()) averageAcrossRanks(inputs, losses, total, movedTotal, result);
    if (inputs.diagnostics) result.gradNorm = gradientNorm(trainable_);
    const bool fused = fusedAdamW_.prepare(*optimizer_);
    const std::vector<at::Tensor> launched = clipAndUpdate(fused);
    if (fused) fusedAdamW_.advance(*optimizer_, launched);
  }
  ++iteration_;

  if (!parallel_.active()) {
    result.cls = losses.cls.detach();
    result.pace = losses.consistency.detach();
    result.total = total.detach();
  }
  result.correct = topOneHits(losses);
  result.counted = losses.targets.size(0);
  return result;
}

std::string Trainer::whyNotGraphed(const StepInputs& inputs, const c10::Device& device, StepGraphMode mode) const {
  if (!inputs.noise.empty()) return "the step replays given noise";
  if (inputs.diagnostics) return "diagnostics (gradient norm, FP-distance) are read on the host every step";
  if (parallel_.active()) return "data-parallel steps all-reduce between processes";
  if (optimizerConfig_.sharpness().active()) return "SAM and the gradient penalty take two gradients per step";
  const peft::PaceConfig& pace = pace_.config();
  if (pace.active() && pace.variant == peft::PaceVariant::Fast)
    return "the fast variant indexes its logit history with each batch's sample indices";
  if (!graphs_.disabledReason().empty()) return graphs_.disabledReason();
  if (mode == StepGraphMode::Rehearse) return "";
  if (std::string reason = graphCaptureUnavailable(device); !reason.empty()) return reason;
  if (!FusedAdamW::capturable()) return "the fused AdamW cannot run inside a graph here";
  return "";
}

std::optional<Trainer::DeviceStep> Trainer::graphedStep(const at::Tensor& images, const at::Tensor& targets,
                                                        const StepInputs& inputs, StepGraphMode mode) {
  constexpr int kWarmupSteps = 3;  // eager steps on the capture stream first, as torch.cuda.graph advises
  const auto device = images.device();
  if (const std::string reason = whyNotGraphed(inputs, device, mode); !reason.empty()) {
    graphs_.countEager(reason);
    return std::nullopt;
  }
  // Outside any capture: the optimizer's state, step counts and learning rate in place on the device.
  const bool fused = fusedAdamW_.prepare(*optimizer_);
  if (!fused && mode == StepGraphMode::Auto) {
    // libtorch's per-parameter AdamW computes its bias corrections on the host: a graph would replay the first.
    graphs_.countEager("the fused AdamW is not available for every trainable parameter");
    return std::nullopt;
  }
  if (precision_ == Precision::Bf16 && frozenBf16_.refresh(*model_)) graphs_.invalidate();
  std::vector<const void*> parameterStorage;
  for (const at::Tensor& parameter : model_->parameters()) parameterStorage.push_back(parameter.data_ptr());
  graphs_.keepOnlyFor(std::move(parameterStorage));
  StepGraphs::Entry& entry = graphs_.entryFor(images, targets, pace_.lazyPaceStep(iteration_.load()));
  entry.images.copy_(images);
  entry.targets.copy_(targets);
  const auto program = [this, &entry, fused] { runStepProgram(entry, fused); };
  if (entry.graph) {
    entry.graph->replay();
    graphs_.countReplayed();
  } else if (entry.warmups < kWarmupSteps) {
    onCaptureStream(graphs_.streams(), device, program);
    ++entry.warmups;
    graphs_.countWarmup();
  } else {
    // This step runs as one more warm-up on this thread, then is captured, not replayed: libtorch creates its
    // cuDNN and cuBLAS handles and caches its convolution plans per thread, lazily, and each call may run on
    // another of Node's pool threads. Created inside the capture they would allocate, which a capture refuses
    // (seen on an H200: the patch embedding's cuDNN handle). A capture does not advance the generators, so the
    // first replay draws what the next eager step would.
    onCaptureStream(graphs_.streams(), device, program);
    // What host code may read after this step comes from the warm-up: the capture leaves the noise draws and the
    // gradients pointing at the graph's outputs, which only a replay computes.
    const std::map<std::string, at::Tensor> warmNoise = pace_.lastNoise();
    std::vector<at::Tensor> warmGrads;
    for (const auto& named : trainable_) warmGrads.push_back(named.tensor.grad());
    try {
      entry.graph = mode == StepGraphMode::Rehearse
                        ? rehearsedGraph(program)
                        : captureGraph(graphs_.streams(), device, program, {noiseGenerator_, dropPathGenerator_});
      copyIntoCapturedOutputs(warmNoise, warmGrads);
      graphs_.countCaptured();
    } catch (const std::exception& error) {
      // The step ran (the warm-up above); the rest run eagerly.
      graphs_.disable(std::string("capturing the step failed: ") + error.what());
      graphs_.countEager(graphs_.disabledReason());
    }
  }
  if (fused) fusedAdamW_.advance(*optimizer_, entry.launched);
  ++iteration_;
  // Copies: the next replay overwrites the entry's outputs, and the epoch reads each loss one step late.
  DeviceStep result;
  result.cls = entry.cls.clone();
  result.pace = entry.pace.clone();
  result.total = entry.total.clone();
  result.correct = entry.correct.clone();
  result.counted = entry.counted;
  return result;
}

void Trainer::copyIntoCapturedOutputs(const std::map<std::string, at::Tensor>& noise,
                                      const std::vector<at::Tensor>& grads) {
  torch::NoGradGuard noGrad;
  for (const auto& [name, draw] : pace_.lastNoise()) {
    const auto warm = noise.find(name);
    if (warm != noise.end() && !warm->second.is_same(draw)) draw.copy_(warm->second);
  }
  for (size_t i = 0; i < trainable_.size(); ++i) {
    const at::Tensor& grad = trainable_[i].tensor.grad();
    if (grad.defined() && grads[i].defined() && !grad.is_same(grads[i])) grad.copy_(grads[i]);
  }
}

void Trainer::runStepProgram(StepGraphs::Entry& entry, bool fused) {
  model_->train(true);
  optimizer_->zero_grad();
  const auto [losses, total] = forwardBackward(entry.images, entry.targets, {}, {}, LossCheck::None, "");
  {
    const PrecisionScope update(backwardPrecision(), entry.images.device().type());
    entry.launched = clipAndUpdate(fused);
  }
  // Written into the entry's outputs in place once they exist (from the first warm-up on): the graph's static
  // outputs, which a rehearsal keeps too, so both hand out what the next replay overwrites.
  const auto keep = [](at::Tensor& output, const at::Tensor& value) {
    if (output.defined() && output.sizes() == value.sizes() && output.scalar_type() == value.scalar_type())
      output.copy_(value);
    else
      output = value.detach().clone();
  };
  torch::NoGradGuard noGrad;
  keep(entry.cls, losses.cls);
  keep(entry.pace, losses.consistency);
  keep(entry.total, total);
  keep(entry.correct, topOneHits(losses));
  entry.counted = losses.targets.size(0);
}

void Trainer::averageAcrossRanks(const StepInputs& inputs, const peft::PaceLosses& losses, const at::Tensor& total,
                                 const at::Tensor& movedTotal, DeviceStep& result) {
  const auto scalar = total.options().dtype(at::kFloat);
  const at::Tensor scalars =
      at::stack({losses.cls.detach().to(at::kFloat), losses.consistency.detach().to(at::kFloat),
                 total.detach().to(at::kFloat), torch::full({}, inputs.stopRequested ? 1.0f : 0.0f, scalar),
                 movedTotal.defined() ? movedTotal.detach().to(at::kFloat) : torch::zeros({}, scalar)});
  const at::Tensor averaged = parallel_.averageGradients(trainable_, scalars, stepPosition(inputs));
  // Every rank now holds the same means, so every rank takes the same decisions from them.
  const float* mean = averaged.data_ptr<float>();
  for (const int which : {2, 4}) {
    if (std::isfinite(mean[which])) continue;
    pace_.forgetLastLogits();  // each rank's own rows of the fast variant's history
    // A non-finite loss at SAM/GP's moved parameters would put NaN gradients into the update, as one process
    // refuses it on the CPU (the moved parameters are back where they were by now).
    throw which == 2
        ? lossDiverged(mean[2], inputs.position, divergenceHint(iteration_.load()),
                       "the parameters are as before this step")
        : lossDiverged(mean[4], movedPosition(inputs.position), kMovedTooFar, "the parameters are as before this step");
  }
  const auto device = total.device();
  result.cls = averaged[0].to(device);
  result.pace = averaged[1].to(device);
  result.total = averaged[2].to(device);
  result.stopAgreed = mean[3] > 0;
  const peft::PaceConfig& pace = pace_.config();
  if (pace.active() && pace.variant == peft::PaceVariant::Fast && parallel_.worldSize() > 1) {
    // Every rank keeps the whole logit history: each records the other ranks' samples of this step too.
    // The ranks' batches may differ in size (an uneven last batch): each is padded to the largest, which the
    // all-gathers need, and only its own rows are kept.
    distributed::Group& group = parallel_.group();
    const int64_t batch = inputs.indices.size(0);
    const auto sizes = group.allGather(torch::full({1}, batch, torch::kLong).to(group.device()),
                                       "sharing the fast variant's batch sizes");
    int64_t largest = 0;
    for (const at::Tensor& size : sizes) largest = std::max(largest, size.item<int64_t>());
    const auto padded = [&](const at::Tensor& rows) {
      const at::Tensor local = rows.to(group.device());
      if (batch == largest) return local;
      std::vector<int64_t> shape = local.sizes().vec();
      shape[0] = largest - batch;
      return at::cat({local, at::zeros(shape, local.options())});
    };
    const auto indices = group.allGather(padded(inputs.indices), "sharing the fast variant's indices");
    const auto logits =
        group.allGather(padded(losses.logits.detach().to(at::kFloat)), "sharing the fast variant's logits");
    for (int r = 0; r < group.worldSize(); ++r) {
      if (r == group.rank()) continue;
      const int64_t rows = sizes[static_cast<size_t>(r)].item<int64_t>();
      pace_.rememberLogits(indices[r].narrow(0, 0, rows), logits[r].narrow(0, 0, rows));
    }
  }
}

StepResult Trainer::step(const StepInputs& inputs, StepGraphMode graphs) {
  const models::TrainingModeScope restore(*model_);  // a forward after the step runs in the caller's mode
  graphs_.takeCounts();
  const DeviceStep onDevice = stepOnDevice(inputs, graphs);
  StepResult result;
  if (graphs != StepGraphMode::Off) {
    const StepGraphCounts counts = graphs_.takeCounts();
    result.graph = counts.captured   ? "captured"
                   : counts.replayed ? "replayed"
                   : counts.warmups  ? "warmup"
                                     : "eager: " + counts.eagerReason;
  }
  result.clsLoss = onDevice.cls.item<double>();
  result.paceLoss = onDevice.pace.item<double>();
  result.totalLoss = onDevice.total.item<double>();
  result.correct = onDevice.correct.item<int64_t>();
  result.counted = onDevice.counted;
  result.gradNorm = onDevice.gradNorm;
  result.fpDistance = onDevice.fpDistance;
  return result;
}

double Trainer::learningRate() const {
  return static_cast<const torch::optim::AdamWOptions&>(optimizer_->param_groups().front().options()).lr();
}

void Trainer::setLearningRate(double lr) {
  optimizerConfig_.checkLearningRate(lr, "lr");
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace pace::train
