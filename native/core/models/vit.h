#pragma once
// Vision Transformer with timm's parameter names and maths (timm 0.9.12 `VisionTransformer`, class token,
// token pooling, pre-norm blocks, exact GELU): LayerNorm eps 1e-6 for the original ViT; the CLIP-style ViT
// (`vit_*_clip_*`, the paper's Laion-2B backbone) has `pre_norm=True`: a LayerNorm `norm_pre` before the blocks,
// no bias on the patch projection and nn.LayerNorm's eps 1e-5.
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
  bool preNorm = false;   // CLIP-style: norm_pre before the blocks, a bias-less patch projection
  double normEps = 1e-6;  // every LayerNorm's eps (1e-5 for the CLIP-style ViT)

  void validate() const;  // throws pace::Error naming the bad field
};

class VitAttentionImpl : public torch::nn::Module {
 public:
  VitAttentionImpl(int64_t dim, int64_t numHeads);
  // `epilogue`: proj's (the block's residual add).
  torch::Tensor forward(const torch::Tensor& x, ForwardContext& context, const LinearEpilogue& epilogue = {});

  int64_t numHeads;
  Linear qkv{nullptr};
  Linear proj{nullptr};
};
TORCH_MODULE(VitAttention);

class VitBlockImpl : public torch::nn::Module {
 public:
  VitBlockImpl(int64_t dim, int64_t numHeads, double mlpRatio, double dropPathRate, double normEps);
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
  VitPatchEmbedImpl(int64_t patchSize, int64_t embedDim, bool bias);
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
  std::string noiseUnitOf(const std::string& linearPath) const override;
  int64_t defaultNoiseBlockStart() const override { return 1; }
  bool exemptFromWeightDecay(const std::string& name) const override {
    return name == "pos_embed" || name == "cls_token";
  }
  bool readsGoogleNpz() const override { return !config.preNorm; }  // Google's files are the original ViT
  std::shared_ptr<Backbone> createLike() const override;

  const VitConfig config;
  VitPatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;
  torch::Tensor pos_embed;
  LayerNorm norm_pre{nullptr};  // CLIP-style only
  torch::nn::ModuleList blocks{nullptr};
  LayerNorm norm{nullptr};
  Linear head{nullptr};

 protected:
  void initialiseHead() override;
};

}  // namespace pace::models
