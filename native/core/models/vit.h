#pragma once
// Vision Transformer with timm's parameter names and maths (timm 0.9.12 `VisionTransformer`, class token,
// token pooling, pre-norm blocks, LayerNorm eps 1e-6, exact GELU).
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include "models/backbone.h"
#include "models/layers.h"

namespace pace::models {

struct VitConfig {
  int64_t imgSize = 224;
  int64_t patchSize = 16;
  int64_t embedDim = 768;
  int64_t depth = 12;
  int64_t numHeads = 12;
  double mlpRatio = 4.0;
  int64_t numClasses = 1000;  // 0: no head, forward returns the pooled features
  double dropPathRate = 0.0;

  void validate() const;  // throws pace::Error naming the bad field
};

class VitAttentionImpl : public torch::nn::Module {
 public:
  VitAttentionImpl(int64_t dim, int64_t numHeads);
  torch::Tensor forward(const torch::Tensor& x, ForwardContext& context);

  int64_t numHeads;
  Linear qkv{nullptr};
  Linear proj{nullptr};
};
TORCH_MODULE(VitAttention);

class VitBlockImpl : public torch::nn::Module {
 public:
  VitBlockImpl(int64_t dim, int64_t numHeads, double mlpRatio, double dropPathRate);
  torch::Tensor forward(const torch::Tensor& x, ForwardContext& context);

  double dropPathRate;
  LayerNorm norm1{nullptr};
  VitAttention attn{nullptr};
  LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(VitBlock);

// patch_embed.proj: a P×P convolution with stride P, then tokens in row-major order.
class VitPatchEmbedImpl : public torch::nn::Module {
 public:
  VitPatchEmbedImpl(int64_t patchSize, int64_t embedDim);
  torch::Tensor forward(const torch::Tensor& images);

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(VitPatchEmbed);

class VisionTransformer : public Backbone {
 public:
  explicit VisionTransformer(const VitConfig& config);

  torch::Tensor forwardFeatures(const torch::Tensor& images, ForwardContext& context) override;
  torch::Tensor forwardHead(const torch::Tensor& features, ForwardContext& context) override;
  std::string family() const override { return "vit"; }
  int64_t imageSize() const override { return config.imgSize; }
  int64_t numClasses() const override { return config.numClasses; }
  std::vector<std::string> headParameterNames() const override;
  void resetHead() override;
  std::string noiseUnitOf(const std::string& linearPath) const override;
  int64_t defaultNoiseBlockStart() const override { return 1; }
  bool readsGoogleNpz() const override { return true; }
  std::shared_ptr<Backbone> createLike() const override;

  const VitConfig config;
  VitPatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;
  torch::Tensor pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  LayerNorm norm{nullptr};
  Linear head{nullptr};
};

}  // namespace pace::models
