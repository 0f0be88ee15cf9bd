#pragma once
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

namespace pace::models {

// What every backbone offers: timm's forward_features / forward_head split and its input contract.
class Backbone : public torch::nn::Module {
 public:
  // Final-norm features: ViT [B, tokens, D]; Swin [B, H, W, C].
  virtual torch::Tensor forwardFeatures(const torch::Tensor& images) = 0;
  // Pooling and the classifier head.
  virtual torch::Tensor forwardHead(const torch::Tensor& features) = 0;
  torch::Tensor forward(const torch::Tensor& images) { return forwardHead(forwardFeatures(images)); }

  virtual std::string family() const = 0;
  virtual int64_t imageSize() const = 0;
  virtual int64_t numClasses() const = 0;
  // The names of the classifier head's parameters (re-initialised when a checkpoint's class count differs).
  virtual std::vector<std::string> headParameterNames() const = 0;
  // Re-initialises the head as timm does when it is created.
  virtual void resetHead() = 0;

  // Throws pace::Error unless `images` is a float tensor [B, 3, S, S] with S the model's image size.
  void checkImages(const torch::Tensor& images) const;
};

}  // namespace pace::models
