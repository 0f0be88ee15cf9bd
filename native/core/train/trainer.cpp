#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <cmath>

#include "errors.h"
#include "models/layers.h"
#include "peft/setup.h"
#include "tensor/dtype.h"

namespace pace::train {

void OptimizerConfig::validate() const {
  if (!(lr >= 0)) throw Error("optimizer.lr must be >= 0");
  if (!(weightDecay >= 0)) throw Error("optimizer.weightDecay must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw Error("optimizer.betas must be in [0, 1)");
  if (!(eps > 0)) throw Error("optimizer.eps must be > 0");
}

void checkTargets(const at::Tensor& targets, int64_t batch, int64_t numClasses) {
  if (targets.scalar_type() != at::kLong || targets.dim() != 1 || targets.size(0) != batch)
    throw Error("targets must be an int64 tensor [" + std::to_string(batch) + "] of class indices; got " +
                dtypeName(targets.scalar_type()) + " " + shapeToString(targets.sizes().vec()));
  if (batch == 0) return;
  const int64_t low = targets.min().item<int64_t>(), high = targets.max().item<int64_t>();
  if (low < 0 || high >= numClasses)
    throw Error("targets must lie in [0, " + std::to_string(numClasses) + "); got values from " + std::to_string(low) +
                " to " + std::to_string(high));
}

Trainer::Trainer(std::shared_ptr<models::Backbone> model, OptimizerConfig optimizer, peft::PaceConfig pace,
                 uint64_t seed)
    : model_(std::move(model)),
      pace_(pace),
      noiseGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed)),
      dropPathGenerator_(at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x9e3779b97f4a7c15ull)) {
  optimizer.validate();
  pace_.validate();
  if (model_->numClasses() < 1) throw Error("training needs a classifier head: create the model with numClasses >= 1");
  trainable_ = peft::trainableParameters(*model_);
  if (trainable_.empty()) throw Error("the model has no trainable parameters: call addAdapters() first");
  std::vector<at::Tensor> parameters;
  for (const auto& named : trainable_) parameters.push_back(named.tensor);
  optimizer_ = std::make_unique<torch::optim::AdamW>(parameters, torch::optim::AdamWOptions(optimizer.lr)
                                                                     .betas({optimizer.beta1, optimizer.beta2})
                                                                     .eps(optimizer.eps)
                                                                     .weight_decay(optimizer.weightDecay));
  sigma_ = peft::sigmaPerLinear(*model_, pace_);
}

Trainer::Losses Trainer::forwardLosses(const at::Tensor& images, const at::Tensor& targets, const at::Tensor& indices,
                                       const std::map<std::string, at::Tensor>& noise) {
  models::Backbone& model = *model_;
  namespace F = torch::nn::functional;
  Losses out;
  if (!pace_.active()) {
    models::SharedDropPathScope dropPathScope(1, dropPathGenerator_);
    out.logits = model.forward(images);
    out.targets = targets;
    out.cls = F::cross_entropy(out.logits, targets);
    out.consistency = torch::zeros({}, out.cls.options());
    return out;
  }
  peft::PaceNoise source(sigma_, pace_.kind, pace_.shape, noiseGenerator_, noise);
  peft::NoiseScope noiseScope(model, source);
  const bool lazyPaceStep = pace_.variant == peft::PaceVariant::Lazy && iteration_ % pace_.lazyInterval == 0;
  if (pace_.variant == peft::PaceVariant::Pace || lazyPaceStep) {
    const int64_t used = lazyPaceStep ? std::max<int64_t>(1, images.size(0) / 2) : images.size(0);
    const at::Tensor x = images.slice(0, 0, used);
    models::SharedDropPathScope dropPathScope(2, dropPathGenerator_);
    const at::Tensor both = model.forward(torch::cat({x, x}, 0));
    out.logits = both.slice(0, 0, used);
    out.targets = targets.slice(0, 0, used);
    out.cls = F::cross_entropy(out.logits, out.targets);
    out.consistency = peft::consistencyLoss(out.logits, both.slice(0, used));
  } else {
    models::SharedDropPathScope dropPathScope(1, dropPathGenerator_);
    out.logits = model.forward(images);
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
        frozen = model.forward(images);
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

StepResult Trainer::step(const StepInputs& inputs) {
  models::Backbone& model = *model_;
  const auto device = model.parameters().front().device();
  const at::Tensor images = inputs.images.to(device);
  model.checkImages(images);
  const int64_t batch = images.size(0);
  checkTargets(inputs.targets, batch, model.numClasses());
  const at::Tensor targets = inputs.targets.to(device);
  for (const auto& [name, draw] : inputs.noise) {
    const auto found = sigma_.find(name);
    if (found == sigma_.end() || found->second == 0.0)
      throw Error("noise was given for '" + name + "', which is not a noisy linear of this model");
  }
  if (pace_.active() && pace_.variant == peft::PaceVariant::Fast) {
    if (!inputs.indices.defined()) throw Error("the fast PACE variant needs each sample's index in the training set");
    checkTargets(inputs.indices, batch, pace_.datasetSize);  // the same contract: int64 [B] within range
    if (!history_.defined()) history_ = torch::zeros({pace_.datasetSize, model.numClasses()}, torch::kFloat);
  }

  StepResult result;
  if (inputs.diagnostics) result.fpDistance = fpDistance(images);
  model.train(true);
  optimizer_->zero_grad();
  const Losses losses = forwardLosses(images, targets, inputs.indices, inputs.noise);
  if (!pace_.active()) lastNoise_.clear();
  const at::Tensor total = losses.cls + pace_.lambda * losses.consistency;
  total.backward();
  if (inputs.diagnostics) {
    double squares = 0;
    for (const auto& named : trainable_) {
      if (named.tensor.grad().defined()) squares += named.tensor.grad().pow(2).sum().item<double>();
    }
    result.gradNorm = std::sqrt(squares);
  }
  optimizer_->step();
  ++iteration_;

  result.clsLoss = losses.cls.item<double>();
  result.paceLoss = losses.consistency.item<double>();
  result.totalLoss = total.item<double>();
  result.correct = losses.logits.argmax(1).eq(losses.targets).sum().item<int64_t>();
  result.counted = losses.targets.size(0);
  return result;
}

void Trainer::setLearningRate(double lr) {
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace pace::train
