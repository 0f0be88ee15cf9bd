#include "peft/pace_objective.h"

#include <torch/nn/functional/loss.h>

#include <set>
#include <string>

#include "errors.h"
#include "peft/cross_entropy.h"
#include "peft/setup.h"
#include "tensor/dtype.h"
#include "tensor/to_device.h"

namespace pace::peft {

namespace {

namespace F = torch::nn::functional;

// Logits as the losses take them: bf16 or half (autocast) up to float32, other dtypes as they are.
at::Tensor forLoss(const at::Tensor& logits) {
  return logits.to(atLeastFloat32(logits.scalar_type()));  // no copy when it is already so
}

// A blockStart past the last noise unit (the blocks, then the head) would leave no linear noisy: PACE off
// without a word.
void checkBlockStart(models::Backbone& model, int64_t blockStart) {
  std::set<std::string> units;
  for (const auto& [path, linear] : model.linears()) units.insert(model.noiseUnitOf(path));
  const auto count = static_cast<int64_t>(units.size());
  if (blockStart >= count)
    throw OptionError("pace.blockStart " + std::to_string(blockStart) + " is past this model's " +
                      std::to_string(count) + " noise units (its blocks, then the head): use 0 to " +
                      std::to_string(count - 1));
}

}  // namespace

PaceObjective::PaceObjective(models::Backbone& model, PaceConfig config) : config_(std::move(config)) {
  config_.validate();
  sigma_ = peft::sigmaPerLinear(model, config_);
  firstNoisyBlock_ = peft::firstNoisyBlock(model, config_);
  if (config_.blockStart) checkBlockStart(model, *config_.blockStart);
  for (const auto& item : model.named_parameters()) {
    if (isAdapterParameter(item.key())) adapterParameters_.push_back(item.value());
  }
}

void PaceObjective::checkReplay(const std::map<std::string, at::Tensor>& replay) const {
  for (const auto& [name, draw] : replay) {
    const auto found = sigma_.find(name);
    if (found == sigma_.end() || found->second == 0.0)
      throw OptionError("noise was given for '" + name + "', which is not a noisy linear of this model");
  }
}

PaceLosses PaceObjective::losses(models::Backbone& model, const at::Tensor& images, const at::Tensor& targets,
                                 const at::Tensor& indices, const std::map<std::string, at::Tensor>& replay,
                                 at::Generator& noiseGenerator, at::Generator& dropPathGenerator, int64_t iteration) {
  PaceLosses out = forwardLosses(model, images, targets, indices, replay, noiseGenerator, dropPathGenerator, iteration);
  out.sparsity = torch::zeros({}, out.cls.options());
  if (config_.adapterL1 > 0) {
    for (const auto& parameter : adapterParameters_) out.sparsity = out.sparsity + parameter.abs().sum().to(at::kFloat);
    out.sparsity = config_.adapterL1 * out.sparsity;
  }
  return out;
}

namespace {
// Above this a history stays in host memory (ImageNet-1k's whole training set: 5 GB), paying a copy each step.
constexpr int64_t kHistoryOnDeviceBytes = int64_t{1} << 30;
}  // namespace

at::Tensor& PaceObjective::historyOn(const at::Device& device, int64_t classes) {
  // Kept where the logits are: on a GPU, a copy to the host each step would stop the host for the device. (A
  // history restored from a checkpoint comes on the CPU, and moves once.)
  const bool fits = config_.datasetSize * classes * static_cast<int64_t>(sizeof(float)) <= kHistoryOnDeviceBytes;
  const at::Device home = fits ? device : at::Device(at::kCPU);
  if (!history_.defined()) {
    history_ = torch::zeros({config_.datasetSize, classes}, at::TensorOptions().dtype(at::kFloat).device(home));
  } else if (history_.device() != home) {
    history_ = history_.to(home);
  }
  return history_;
}

void PaceObjective::rememberLogits(const at::Tensor& indices, const at::Tensor& logits) {
  at::Tensor& history = history_.defined() ? history_ : historyOn(logits.device(), logits.size(1));
  history.index_copy_(0, toDeviceQueued(indices, history.device()), logits.detach().to(history.device(), at::kFloat));
}

void PaceObjective::forgetLastLogits() {
  if (replacedIndices_.defined() && history_.defined()) history_.index_copy_(0, replacedIndices_, replacedRows_);
  replacedIndices_ = replacedRows_ = at::Tensor();
}

PaceLosses PaceObjective::forwardLosses(models::Backbone& model, const at::Tensor& images, const at::Tensor& targets,
                                        const at::Tensor& indices, const std::map<std::string, at::Tensor>& replay,
                                        at::Generator& noiseGenerator, at::Generator& dropPathGenerator,
                                        int64_t iteration) {
  PaceLosses out;
  replacedIndices_ = replacedRows_ = at::Tensor();
  if (!config_.active()) {
    lastNoise_.clear();
    models::ForwardContext plain(1, 0, dropPathGenerator, nullptr);
    out.logits = forLoss(model.forward(images, plain));
    out.targets = targets;
    out.cls = crossEntropy(out.logits, targets);
    out.consistency = torch::zeros({}, out.cls.options());
    return out;
  }
  PaceNoise noise(sigma_, config_.kind, config_.shape, noiseGenerator, replay, config_.noiseOn);
  const bool lazyPaceStep = this->lazyPaceStep(iteration);
  if (config_.variant == PaceVariant::Pace || lazyPaceStep) {
    const int64_t used = lazyPaceStep ? std::max<int64_t>(1, images.size(0) / 2) : images.size(0);
    const at::Tensor x = images.slice(0, 0, used);
    // The copies of x (two in the reference), stacked inside the forward where the first noise is applied
    // (before it they are equal); the cross-entropy sees the first.
    models::ForwardContext views(config_.copies, firstNoisyBlock_, dropPathGenerator, &noise);
    views.renormaliseDropPath = true;
    const at::Tensor all = forLoss(model.forward(x, views));
    out.logits = all.slice(0, 0, used);
    out.targets = targets.slice(0, 0, used);
    out.cls = crossEntropy(out.logits, out.targets);
    out.consistency = consistencyAmong(all, config_.copies);
  } else {
    models::ForwardContext single(1, 0, dropPathGenerator, &noise);
    single.renormaliseDropPath = true;  // the reference's SharableDropPath with one copy, as in its lazy and fast steps
    out.logits = forLoss(model.forward(images, single));
    out.targets = targets;
    out.cls = crossEntropy(out.logits, targets);
    if (config_.variant == PaceVariant::Fast) {
      at::Tensor& history = historyOn(out.logits.device(), model.numClasses());
      replacedIndices_ = toDeviceQueued(indices, history.device());
      const at::Tensor recent = history.index_select(0, replacedIndices_);
      replacedRows_ = recent;
      rememberLogits(indices, out.logits);
      out.consistency = consistencyLoss(out.logits, toDeviceQueued(recent, out.logits.device()));
    } else if (config_.variant == PaceVariant::Fpa) {
      // The frozen backbone's logits (same head), without noise or stochastic depth, as a fixed target.
      at::Tensor frozen;
      {
        torch::NoGradGuard noGrad;
        models::ForwardContext pretrained;
        pretrained.adaptersBypassed = true;
        model.train(false);
        frozen = forLoss(model.forward(images, pretrained));
        model.train(true);
      }
      out.consistency = consistencyLoss(out.logits, frozen);
    } else {
      out.consistency = torch::zeros({}, out.cls.options());  // the noise ablation, or a lazy step without it
    }
  }
  lastNoise_ = noise.draws();
  return out;
}

}  // namespace pace::peft
