#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>

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

StepResult Trainer::step(const at::Tensor& imagesIn, const at::Tensor& targetsIn,
                         const std::map<std::string, at::Tensor>& noise) {
  models::Backbone& model = *model_;
  const auto device = model.parameters().front().device();
  const at::Tensor images = imagesIn.to(device);
  model.checkImages(images);
  const int64_t batch = images.size(0);
  checkTargets(targetsIn, batch, model.numClasses());
  const at::Tensor targets = targetsIn.to(device);

  for (const auto& [name, draw] : noise) {
    const auto found = sigma_.find(name);
    if (found == sigma_.end() || found->second == 0.0)
      throw Error("noise was given for '" + name + "', which is not a noisy linear of this model");
  }

  model.train(true);
  optimizer_->zero_grad();
  StepResult result;
  at::Tensor logits, total, cls, consistency;
  if (pace_.active()) {
    peft::PaceNoise source(sigma_, pace_.kind, pace_.shape, noiseGenerator_, noise);
    peft::NoiseScope noiseScope(model, source);
    models::SharedDropPathScope dropPathScope(2, dropPathGenerator_);
    const at::Tensor both = model.forward(torch::cat({images, images}, 0));
    logits = both.slice(0, 0, batch);
    cls = torch::nn::functional::cross_entropy(logits, targets);
    consistency = peft::consistencyLoss(logits, both.slice(0, batch));
    total = cls + pace_.lambda * consistency;
    lastNoise_ = source.draws();
  } else {
    lastNoise_.clear();
    models::SharedDropPathScope dropPathScope(1, dropPathGenerator_);
    logits = model.forward(images);
    cls = torch::nn::functional::cross_entropy(logits, targets);
    consistency = torch::zeros({}, cls.options());
    total = cls;
  }
  total.backward();
  optimizer_->step();

  result.clsLoss = cls.item<double>();
  result.paceLoss = consistency.item<double>();
  result.totalLoss = total.item<double>();
  result.correct = logits.argmax(1).eq(targets).sum().item<int64_t>();
  return result;
}

void Trainer::setLearningRate(double lr) {
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace pace::train
