#pragma once
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/forward_context.h"
#include "models/init_random.h"

namespace pace::models {

class LinearImpl;

// What every backbone offers: timm's forward_features / forward_head split and its input contract.
class Backbone : public torch::nn::Module {
 public:
  // A backbone made inside an InitRandomScope keeps that scope's generator for its later initialisation
  // (adapters, a reset head); one made outside any gets a fresh one.
  Backbone();

  // Final-norm features: ViT [B, tokens, D]; Swin [B, H, W, C].
  virtual torch::Tensor forwardFeatures(const torch::Tensor& images, ForwardContext& context) = 0;
  // Pooling and the classifier head.
  virtual torch::Tensor forwardHead(const torch::Tensor& features, ForwardContext& context) = 0;
  // The context's copies are stacked before the head at the latest.
  torch::Tensor forward(const torch::Tensor& images, ForwardContext& context);
  // Inference: a default context (no noise, one copy).
  torch::Tensor forward(const torch::Tensor& images);
  torch::Tensor forwardFeatures(const torch::Tensor& images);

  virtual std::string family() const = 0;
  virtual int64_t imageSize() const = 0;
  virtual int64_t numClasses() const = 0;
  // The names of the classifier head's parameters (re-initialised when a checkpoint's class count differs).
  virtual std::vector<std::string> headParameterNames() const = 0;
  // Re-initialises the head as timm's reset_classifier does (a new nn.Linear: weight and bias uniform in
  // ±1/√in_features, the PACE reference's head), drawing from the model's generator. A model made from scratch
  // starts from timm's own initialisation instead (truncated normal, std 0.02, zero bias).
  void resetHead();
  // The generator this model's initialisation draws from (models/init_random.h).
  const at::Generator& initGenerator() const { return initGenerator_; }

  // Throws pace::Error unless `images` is a float tensor [B, 3, S, S] with S the model's image size.
  void checkImages(const torch::Tensor& images) const;

  // Every Linear in registration order, with its dotted path (the head last); sets each one's `path`.
  std::vector<std::pair<std::string, LinearImpl*>> linears();
  // The block a linear belongs to for PACE's depth schedule ("blocks.3", "layers.1.blocks.0", "head").
  virtual std::string noiseUnitOf(const std::string& linearPath) const = 0;
  // Whether timm's no_weight_decay() exempts this parameter from weight decay (beyond the biases and other 1-D
  // parameters create_optimizer_v2 always exempts): what full fine-tuning decays as timm does.
  virtual bool exemptFromWeightDecay(const std::string& name) const = 0;
  // The first block PACE's noise reaches unless the user says otherwise (the reference: ViT 1, Swin 0).
  virtual int64_t defaultNoiseBlockStart() const = 0;
  // The family's part of timm's checkpoint filter, after the shared one (models/weights.cpp): renames older
  // layouts, drops buffers the model recomputes (adding their names to `ignored`).
  virtual void filterCheckpoint(std::vector<NamedTensor>& /*tensors*/, std::vector<std::string>& /*ignored*/) const {}
  // Whether Google's Flax ViT .npz files hold weights for this family.
  virtual bool readsGoogleNpz() const { return false; }
  // A new model of the same configuration (freshly initialised, no adapters).
  virtual std::shared_ptr<Backbone> createLike() const = 0;

 protected:
  virtual void initialiseHead() = 0;

 private:
  at::Generator initGenerator_;
};

// Puts the model back in the mode it had on entry when the scope ends, whatever ran inside (a training step,
// an evaluation) and whether it threw.
class TrainingModeScope {
 public:
  explicit TrainingModeScope(Backbone& model) : model_(model), training_(model.is_training()) {}
  ~TrainingModeScope() { model_.train(training_); }
  TrainingModeScope(const TrainingModeScope&) = delete;
  TrainingModeScope& operator=(const TrainingModeScope&) = delete;

 private:
  Backbone& model_;
  bool training_;
};

}  // namespace pace::models
