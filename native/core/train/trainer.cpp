#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <chrono>
#include <cmath>

#include "errors.h"
#include "models/layers.h"
#include "peft/setup.h"
#include "tensor/dtype.h"

namespace pace::train {

void OptimizerConfig::validate() const {
  if (!(lr >= 0)) throw OptionError("optimizer.lr must be >= 0");
  if (!(weightDecay >= 0)) throw OptionError("optimizer.weightDecay must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw OptionError("optimizer.betas must be in [0, 1)");
  if (!(eps > 0)) throw OptionError("optimizer.eps must be > 0");
  if (!(clipGradNorm >= 0)) throw OptionError("optimizer.clipGradNorm must be >= 0");
}

void checkTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses) {
  if (targets.scalar_type() != at::kLong || targets.dim() != 1 || targets.size(0) != batch)
    throw ShapeError("targets must be an int64 tensor [" + std::to_string(batch) + "] of class indices; got " +
                     dtypeName(targets.scalar_type()) + " " + shapeToString(targets.sizes().vec()));
  if (batch == 0) return;
  const int64_t low = targets.min().item<int64_t>(), high = targets.max().item<int64_t>();
  if (low < 0 || high >= numClasses)
    throw InputError("targets must lie in [0, " + std::to_string(numClasses) + "); got values from " +
                     std::to_string(low) + " to " + std::to_string(high));
}

namespace {

constexpr uint64_t kDropPathSalt = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kAugmentSalt = 0xc2b2ae3d27d4eb4full;

at::Generator seededGenerator(const c10::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator generator = at::globalContext().defaultGenerator(device).clone();
  generator.set_current_seed(seed);
  return generator;
}

// Scales the gradients so their total L2 norm is at most maxNorm. The norm stays on the device (libtorch's
// clip_grad_norm_ returns it as a double, which waits for the device every step).
void clipGradNorm(const std::vector<NamedTensor>& parameters, double maxNorm) {
  std::vector<at::Tensor> norms;
  for (const auto& named : parameters) {
    if (named.tensor.grad().defined()) norms.push_back(named.tensor.grad().detach().to(at::kFloat).norm());
  }
  if (norms.empty()) return;
  const at::Tensor total = at::stack(norms).norm();
  const at::Tensor scale = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& named : parameters) {
    if (named.tensor.grad().defined()) named.tensor.mutable_grad().mul_(scale.to(named.tensor.grad().scalar_type()));
  }
}

// For its lifetime the frozen parameters hold their bfloat16 copies; the float32 data comes back at the end.
class FrozenInBf16 {
 public:
  template <typename Copies>
  explicit FrozenInBf16(Copies& copies) {
    for (auto& copy : copies) {
      originals_.emplace_back(copy.parameter, copy.parameter.data());
      copy.parameter.set_data(copy.bf16);
    }
  }
  ~FrozenInBf16() {
    for (auto& [parameter, original] : originals_) parameter.set_data(original);
  }
  FrozenInBf16(const FrozenInBf16&) = delete;
  FrozenInBf16& operator=(const FrozenInBf16&) = delete;

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> originals_;
};

constexpr int64_t kMaxDatasetBytesOnDevice = int64_t{4} << 30;

// Logits as the losses take them: bf16 or half (autocast) up to float32, other dtypes as they are.
at::Tensor forLoss(const at::Tensor& logits) {
  const auto type = logits.scalar_type();
  return type == at::kBFloat16 || type == at::kHalf ? logits.to(at::kFloat) : logits;
}

}  // namespace

Trainer::Trainer(std::shared_ptr<models::Backbone> model, OptimizerConfig optimizer, peft::PaceConfig pace,
                 uint64_t seed, Precision precision)
    : model_(std::move(model)),
      clipGradNorm_(optimizer.clipGradNorm),
      pace_(pace),
      seed_(seed),
      precision_(precision),
      noiseGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed)),
      dropPathGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed ^ kDropPathSalt)),
      augmentGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed ^ kAugmentSalt)) {
  optimizer.validate();
  pace_.validate();
  if (model_->numClasses() < 1)
    throw StateError("training needs a classifier head: create the model with numClasses >= 1");
  trainable_ = peft::trainableParameters(*model_);
  if (trainable_.empty()) throw StateError("the model has no trainable parameters: call addAdapters() first");
  std::vector<at::Tensor> parameters;
  for (const auto& named : trainable_) parameters.push_back(named.tensor);
  optimizer_ = std::make_unique<torch::optim::AdamW>(parameters, torch::optim::AdamWOptions(optimizer.lr)
                                                                     .betas({optimizer.beta1, optimizer.beta2})
                                                                     .eps(optimizer.eps)
                                                                     .weight_decay(optimizer.weightDecay));
  sigma_ = peft::sigmaPerLinear(*model_, pace_);
  placeGenerators(model_->parameters().front().device());
}

void Trainer::placeGenerators(const c10::Device& device) {
  if (noiseGenerator_.device() == device) return;
  noiseGenerator_ = seededGenerator(device, seed_);
  dropPathGenerator_ = seededGenerator(device, seed_ ^ kDropPathSalt);
}

at::Tensor Trainer::datasetOn(const at::Tensor& images, const c10::Device& device) {
  if (images.device() == device || !images.device().is_cpu() ||
      images.numel() * static_cast<int64_t>(images.element_size()) > kMaxDatasetBytesOnDevice)
    return images;
  if (!datasetSource_.is_same(images) || datasetVersion_ != images._version() || datasetOnDevice_.device() != device) {
    datasetOnDevice_ = images.to(device);
    datasetSource_ = images;
    datasetVersion_ = images._version();
  }
  return datasetOnDevice_;
}

Trainer::Losses Trainer::forwardLosses(const at::Tensor& images, const at::Tensor& targets, const at::Tensor& indices,
                                       const std::map<std::string, at::Tensor>& noise) {
  models::Backbone& model = *model_;
  namespace F = torch::nn::functional;
  Losses out;
  if (!pace_.active()) {
    models::BatchCopiesScope copies(1, 0, dropPathGenerator_);
    out.logits = forLoss(model.forward(images));
    out.targets = targets;
    out.cls = F::cross_entropy(out.logits, targets);
    out.consistency = torch::zeros({}, out.cls.options());
    return out;
  }
  peft::PaceNoise source(sigma_, pace_.kind, pace_.shape, noiseGenerator_, noise);
  peft::NoiseScope noiseScope(model, source);
  const bool lazyPaceStep = pace_.variant == peft::PaceVariant::Lazy && iteration_.load() % pace_.lazyInterval == 0;
  if (pace_.variant == peft::PaceVariant::Pace || lazyPaceStep) {
    const int64_t used = lazyPaceStep ? std::max<int64_t>(1, images.size(0) / 2) : images.size(0);
    const at::Tensor x = images.slice(0, 0, used);
    // Two copies of x, stacked inside the forward where the first noise is applied (before it they are equal).
    models::BatchCopiesScope copies(2, peft::firstNoisyBlock(model, pace_), dropPathGenerator_);
    const at::Tensor both = forLoss(model.forward(x));
    out.logits = both.slice(0, 0, used);
    out.targets = targets.slice(0, 0, used);
    out.cls = F::cross_entropy(out.logits, out.targets);
    out.consistency = peft::consistencyLoss(out.logits, both.slice(0, used));
  } else {
    models::BatchCopiesScope copies(1, 0, dropPathGenerator_);
    out.logits = forLoss(model.forward(images));
    out.targets = targets;
    out.cls = F::cross_entropy(out.logits, targets);
    if (pace_.variant == peft::PaceVariant::Fast) {
      const at::Tensor recent = history_.index_select(0, indices.to(history_.device()));
      history_.index_copy_(0, indices.to(history_.device()), out.logits.detach().to(history_.device()));
      out.consistency = peft::consistencyLoss(out.logits, recent.to(out.logits.device()));
    } else if (pace_.variant == peft::PaceVariant::Fpa) {
      // The frozen backbone's logits (same head), without noise or stochastic depth, as a fixed target.
      at::Tensor frozen;
      {
        torch::NoGradGuard noGrad;
        models::AdapterBypassScope bypass;
        peft::PaceNoise silent({}, pace_.kind, pace_.shape, noiseGenerator_);
        peft::NoiseScope quiet(model, silent);
        model.train(false);
        frozen = forLoss(model.forward(images));
        model.train(true);
      }
      out.consistency = peft::consistencyLoss(out.logits, frozen);
    } else {
      out.consistency = torch::zeros({}, out.cls.options());  // a lazy step without consistency
    }
  }
  lastNoise_ = source.draws();
  return out;
}

double Trainer::fpDistance(const at::Tensor& images) {
  models::Backbone& model = *model_;
  torch::NoGradGuard noGrad;
  model.train(false);
  const at::Tensor tuned = model.forward(images);
  at::Tensor frozen;
  {
    models::AdapterBypassScope bypass;
    frozen = model.forward(images);
  }
  model.train(true);
  return peft::consistencyLoss(tuned, frozen).item<double>();
}

Trainer::DeviceStep Trainer::stepOnDevice(const StepInputs& inputs) {
  models::Backbone& model = *model_;
  const auto device = model.parameters().front().device();
  placeGenerators(device);
  const at::Tensor images = inputs.images.to(device);
  model.checkImages(images);
  const int64_t batch = images.size(0);
  checkTargets(inputs.targets, batch, model.numClasses());
  const at::Tensor targets = inputs.targets.to(device);
  for (const auto& [name, draw] : inputs.noise) {
    const auto found = sigma_.find(name);
    if (found == sigma_.end() || found->second == 0.0)
      throw OptionError("noise was given for '" + name + "', which is not a noisy linear of this model");
  }
  if (pace_.active() && pace_.variant == peft::PaceVariant::Fast) {
    if (!inputs.indices.defined())
      throw OptionError("the fast PACE variant needs each sample's index in the training set");
    checkTargets(inputs.indices, batch, pace_.datasetSize);  // the same contract: int64 [B] within range
    if (!history_.defined()) history_ = torch::zeros({pace_.datasetSize, model.numClasses()}, torch::kFloat);
  }

  DeviceStep result;
  if (inputs.diagnostics) result.fpDistance = fpDistance(images);
  model.train(true);
  optimizer_->zero_grad();
  std::optional<FrozenInBf16> frozenInBf16;
  if (precision_ == Precision::Bf16) {
    refreshFrozenBf16();
    frozenInBf16.emplace(frozenBf16_);
  }
  Losses losses;
  {
    const PrecisionScope forward(precision_, device.type());
    losses = forwardLosses(images, targets, inputs.indices, inputs.noise);
  }
  if (!pace_.active()) lastNoise_.clear();
  const at::Tensor total = losses.cls + pace_.lambda * losses.consistency;
  {
    // Backward and the update: TF32 as asked; bf16 products were fixed by the forward's casts.
    const PrecisionScope rest(precision_ == Precision::Bf16 ? Precision::Fp32 : precision_, device.type());
    total.backward();
    frozenInBf16.reset();
    if (inputs.diagnostics) {
      double squares = 0;
      for (const auto& named : trainable_) {
        if (named.tensor.grad().defined()) squares += named.tensor.grad().pow(2).sum().item<double>();
      }
      result.gradNorm = std::sqrt(squares);
    }
    if (clipGradNorm_ > 0) clipGradNorm(trainable_, clipGradNorm_);
    if (!fusedAdamW_.step(*optimizer_)) optimizer_->step();
  }
  ++iteration_;

  result.cls = losses.cls.detach();
  result.pace = losses.consistency.detach();
  result.total = total.detach();
  result.correct = losses.logits.detach().argmax(1).eq(losses.targets).sum();
  result.counted = losses.targets.size(0);
  return result;
}

StepResult Trainer::step(const StepInputs& inputs) {
  const DeviceStep onDevice = stepOnDevice(inputs);
  StepResult result;
  result.clsLoss = onDevice.cls.item<double>();
  result.paceLoss = onDevice.pace.item<double>();
  result.totalLoss = onDevice.total.item<double>();
  result.correct = onDevice.correct.item<int64_t>();
  result.counted = onDevice.counted;
  result.gradNorm = onDevice.gradNorm;
  result.fpDistance = onDevice.fpDistance;
  return result;
}

void Trainer::refreshFrozenBf16() {
  if (frozenBf16_.empty()) {
    torch::NoGradGuard noGrad;
    // The frozen weights of the linears and convolutions: what autocast would cast to bf16 at every use.
    // Position embeddings, class tokens and bias tables stay float32, so the residual stream they start
    // stays float32 as it does under PyTorch's autocast.
    const std::string suffix = "weight";
    for (const auto& named : model_->named_parameters()) {
      const at::Tensor& parameter = named.value();
      const std::string& name = named.key();
      const bool isWeight =
          name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
      if (isWeight && !parameter.requires_grad() && parameter.scalar_type() == at::kFloat && parameter.dim() >= 2)
        frozenBf16_.push_back({parameter, at::Tensor(), -1, nullptr});
    }
  }
  torch::NoGradGuard noGrad;
  for (auto& copy : frozenBf16_) {
    // Re-made when the float32 weights changed (loaded, moved or edited in place) since the copy was taken.
    if (copy.version == copy.parameter._version() && copy.source == copy.parameter.data_ptr() &&
        copy.bf16.device() == copy.parameter.device())
      continue;
    copy.bf16 = copy.parameter.detach().to(at::kBFloat16);
    copy.version = copy.parameter._version();
    copy.source = copy.parameter.data_ptr();
  }
}

EpochResult Trainer::runEpoch(const at::Tensor& images, const at::Tensor& labels, const EpochOptions& options,
                              const std::atomic<bool>* abort,
                              const std::function<void(const BatchProgress&)>& onBatch) {
  const int64_t n = images.size(0);
  if (options.batchSize < 1) throw OptionError("batchSize must be >= 1");
  if (labels.dim() != 1 || labels.size(0) != n)
    throw ShapeError("the dataset has " + std::to_string(n) + " images but " + std::to_string(labels.numel()) +
                     " labels");
  const int64_t steps = n / options.batchSize;
  if (steps == 0)
    throw InputError("the dataset has " + std::to_string(n) + " samples, fewer than one batch of " +
                     std::to_string(options.batchSize) + " (the last partial batch is dropped)");
  at::Generator shuffle =
      at::make_generator<at::CPUGeneratorImpl>(options.shuffleSeed * 1000003ull + static_cast<uint64_t>(options.epoch));
  const at::Tensor order = at::randperm(n, shuffle, at::TensorOptions().dtype(at::kLong));
  EpochResult result;
  const auto start = std::chrono::steady_clock::now();
  const auto device = model_->parameters().front().device();
  const at::Tensor stored = datasetOn(images, device);
  const at::Tensor labelsOnCpu = labels.cpu();  // read by each step's range check without waiting for the device
  // The sums stay on the device; each step's loss is read one step late, once the next step is queued, so
  // the host never waits for the device to run dry.
  at::Tensor sums = torch::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device));
  double gradNorms = 0, fpDistances = 0;
  struct Pending {
    int64_t step;
    at::Tensor total;
  };
  std::optional<Pending> pending;
  const auto settle = [&]() {
    if (!pending) return;
    const double total = pending->total.item<double>();
    if (!std::isfinite(total))
      throw DivergedError("the loss became " + std::to_string(total) + " at epoch " + std::to_string(options.epoch) +
                          ", step " + std::to_string(pending->step) + " (lower the learning rate or check the data)");
    if (onBatch) onBatch({pending->step + 1, steps, total});
    pending.reset();
  };
  for (int64_t s = 0; s < steps; ++s) {
    if (abort && abort->load()) {
      result.aborted = true;
      break;
    }
    if (static_cast<size_t>(s) < options.stepLearningRates.size()) setLearningRate(options.stepLearningRates[s]);
    StepInputs inputs;
    inputs.indices = order.slice(0, s * options.batchSize, (s + 1) * options.batchSize);
    at::Tensor batch = stored.index_select(0, inputs.indices.to(stored.device()));
    if (options.augmentCrop > 0 || options.augmentFlip) {
      const int64_t crop = options.augmentCrop > 0 ? options.augmentCrop : std::min(batch.size(1), batch.size(2));
      batch = data::randomCropFlip(batch, crop, options.augmentFlip, augmentGenerator_);
    }
    inputs.images = batchInput(*model_, batch, options.normalization);
    inputs.targets = labelsOnCpu.index_select(0, inputs.indices);
    inputs.diagnostics = options.diagnostics;
    const DeviceStep step = stepOnDevice(inputs);
    sums.add_(at::stack({step.cls.to(at::kDouble), step.pace.to(at::kDouble), step.total.to(at::kDouble),
                         step.correct.to(at::kDouble)}));
    settle();
    pending = Pending{s, step.total};
    ++result.steps;
    result.samples += step.counted;
    gradNorms += step.gradNorm;
    fpDistances += step.fpDistance;
  }
  settle();
  if (result.steps > 0) {
    const at::Tensor totals = sums.cpu();
    const double* sum = totals.data_ptr<double>();
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

at::Tensor batchInput(const models::Backbone& model, const at::Tensor& images,
                      const std::optional<data::Normalization>& normalization) {
  if (images.scalar_type() != at::kByte) return images;
  if (!normalization) throw OptionError("a uint8 image dataset needs its normalisation (mean and std)");
  return data::toModelInput(images, model.imageSize(), *normalization);
}

EvaluationResult evaluate(models::Backbone& model, const at::Tensor& images, const at::Tensor& labels,
                          int64_t batchSize, const std::optional<data::Normalization>& normalization) {
  const int64_t n = images.size(0), classes = model.numClasses();
  if (classes < 1) throw StateError("evaluation needs a classifier head");
  if (batchSize < 1) throw OptionError("batchSize must be >= 1");
  checkTargets(labels, n, classes);
  torch::NoGradGuard noGrad;
  struct RestoreMode {
    models::Backbone& model;
    bool training;
    ~RestoreMode() { model.train(training); }
  } restore{model, model.is_training()};
  model.train(false);
  const auto device = model.parameters().front().device();
  // Counts and sums stay on the model's device and are read once at the end: on a GPU a read per batch
  // would wait for each batch to finish before the next is queued.
  const auto counts = torch::TensorOptions().dtype(torch::kLong).device(device);
  at::Tensor confusion = torch::zeros({classes * classes}, counts);
  at::Tensor top1 = torch::zeros({}, counts), top5 = torch::zeros({}, counts);
  at::Tensor loss = torch::zeros({}, counts.dtype(torch::kDouble));
  for (int64_t begin = 0; begin < n; begin += batchSize) {
    const int64_t end = std::min(n, begin + batchSize);
    const at::Tensor x = batchInput(model, images.slice(0, begin, end), normalization).to(device);
    const at::Tensor y = labels.slice(0, begin, end).to(device);
    const at::Tensor logits = model.forward(x);
    loss.add_(torch::nn::functional::cross_entropy(
                  logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .to(torch::kDouble));
    const at::Tensor predicted = logits.argmax(1);
    top1.add_(predicted.eq(y).sum());
    if (classes >= 5) top5.add_(std::get<1>(logits.topk(5, 1)).eq(y.unsqueeze(1)).any(1).sum());
    confusion.index_add_(0, y * classes + predicted, torch::ones({end - begin}, counts));
  }
  EvaluationResult result;
  result.samples = n;
  result.confusion = confusion.view({classes, classes}).cpu();
  result.top1 = n ? static_cast<double>(top1.item<int64_t>()) / n : 0;
  if (classes >= 5) result.top5 = n ? static_cast<double>(top5.item<int64_t>()) / n : 0;
  result.loss = n ? loss.item<double>() / n : 0;
  return result;
}

std::vector<NamedTensor> Trainer::state() const {
  std::vector<NamedTensor> out;
  const auto& optimizerState = optimizer_->state();
  for (const auto& named : trainable_) {
    out.push_back({"param." + named.name, named.tensor.detach().clone()});
    const auto found = optimizerState.find(optimizerStateKey<std::decay_t<decltype(optimizerState)>>(named.tensor));
    if (found == optimizerState.end()) continue;
    const auto& moments = static_cast<const torch::optim::AdamWParamState&>(*found->second);
    out.push_back({"adamw." + named.name + ".exp_avg", moments.exp_avg().clone()});
    out.push_back({"adamw." + named.name + ".exp_avg_sq", moments.exp_avg_sq().clone()});
    out.push_back(
        {"adamw." + named.name + ".step", torch::full({}, static_cast<int64_t>(moments.step()), torch::kLong)});
  }
  out.push_back({"rng.noise", noiseGenerator_.get_state()});
  out.push_back({"rng.drop_path", dropPathGenerator_.get_state()});
  out.push_back({"rng.augment", augmentGenerator_.get_state()});
  out.push_back({"trainer.iteration", torch::full({}, iteration_.load(), torch::kLong)});
  if (history_.defined()) out.push_back({"pace.history", history_.clone()});
  return out;
}

void Trainer::restoreState(const std::vector<NamedTensor>& state) {
  std::map<std::string, at::Tensor> byName;
  for (const auto& named : state) byName[named.name] = named.tensor;
  const auto need = [&](const std::string& name) -> const at::Tensor& {
    const auto found = byName.find(name);
    if (found == byName.end())
      throw FileError("training checkpoint lacks '" + name + "' (was it made for another model?)");
    return found->second;
  };
  // Every check comes first: a checkpoint that does not fit leaves the trainer as it was.
  const auto sameShape = [&](const std::string& name, const at::Tensor& like) {
    const at::Tensor& value = need(name);
    if (value.sizes() != like.sizes())
      throw ShapeError("training checkpoint: '" + name + "' has shape " + shapeToString(value.sizes().vec()) +
                       ", expected " + shapeToString(like.sizes().vec()));
  };
  for (const auto& named : trainable_) {
    sameShape("param." + named.name, named.tensor);
    if (byName.count("adamw." + named.name + ".step")) {
      sameShape("adamw." + named.name + ".exp_avg", named.tensor);
      sameShape("adamw." + named.name + ".exp_avg_sq", named.tensor);
    }
  }
  for (const char* name : {"rng.noise", "rng.drop_path", "rng.augment", "trainer.iteration"}) need(name);
  placeGenerators(model_->parameters().front().device());
  for (const auto& [name, generator] : {std::pair<const char*, at::Generator*>{"rng.noise", &noiseGenerator_},
                                        {"rng.drop_path", &dropPathGenerator_},
                                        {"rng.augment", &augmentGenerator_}}) {
    if (need(name).numel() != generator->get_state().numel())
      throw FileError(std::string("training checkpoint: '") + name +
                      "' is the state of a random generator on another " + "device than this model's " +
                      generator->device().str() + " (resume on the device it was saved on)");
  }
  if (byName.count("pace.history") && pace_.variant == peft::PaceVariant::Fast)
    sameShape("pace.history", torch::zeros({pace_.datasetSize, model_->numClasses()}));
  torch::NoGradGuard noGrad;
  auto& optimizerState = optimizer_->state();
  for (const auto& named : trainable_) {
    named.tensor.copy_(need("param." + named.name));
    const auto key = optimizerStateKey<std::decay_t<decltype(optimizerState)>>(named.tensor);
    if (!byName.count("adamw." + named.name + ".step")) {
      optimizerState.erase(key);
      continue;
    }
    auto moments = std::make_unique<torch::optim::AdamWParamState>();
    moments->step(need("adamw." + named.name + ".step").item<int64_t>());
    moments->exp_avg(need("adamw." + named.name + ".exp_avg").to(named.tensor.device()).clone());
    moments->exp_avg_sq(need("adamw." + named.name + ".exp_avg_sq").to(named.tensor.device()).clone());
    optimizerState[key] = std::move(moments);
  }
  noiseGenerator_.set_state(need("rng.noise"));
  dropPathGenerator_.set_state(need("rng.drop_path"));
  augmentGenerator_.set_state(need("rng.augment"));
  iteration_ = need("trainer.iteration").item<int64_t>();
  history_ = byName.count("pace.history") ? byName["pace.history"].clone() : at::Tensor();
}

void Trainer::setLearningRate(double lr) {
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace pace::train
