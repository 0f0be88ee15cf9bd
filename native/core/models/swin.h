#pragma once
// Swin Transformer with timm's (>= 0.9) parameter names and maths: NHWC throughout, shifted windows with
// a relative-position bias and a -100 shift mask, PatchMerging at the start of stages 1.., LayerNorm eps 1e-5.
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include "models/backbone.h"
#include "models/layers.h"

namespace pace::models {

struct SwinConfig {
  int64_t imgSize = 224;
  int64_t patchSize = 4;
  int64_t windowSize = 7;
  int64_t embedDim = 96;
  std::vector<int64_t> depths = {2, 2, 6, 2};
  std::vector<int64_t> numHeads = {3, 6, 12, 24};
  double mlpRatio = 4.0;
  int64_t numClasses = 1000;
  double dropPathRate = 0.1;

  void validate() const;
};

class WindowAttentionImpl : public torch::nn::Module {
 public:
  WindowAttentionImpl(int64_t dim, int64_t numHeads, int64_t windowSize);
  // x: [windows, w², C]; mask: [windows per image, w², w²] or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, ForwardContext& context);

  int64_t numHeads;
  int64_t windowSize;
  torch::Tensor relative_position_bias_table;
  torch::Tensor relative_position_index;  // recomputed, never loaded (non-persistent in timm >= 0.9.6)
  Linear qkv{nullptr};
  Linear proj{nullptr};
};
TORCH_MODULE(WindowAttention);

class SwinBlockImpl : public torch::nn::Module {
 public:
  SwinBlockImpl(int64_t dim, int64_t resolution, int64_t numHeads, int64_t windowSize, int64_t shiftSize,
                double mlpRatio, double dropPathRate);
  torch::Tensor forward(const torch::Tensor& x, ForwardContext& context);  // [B, H, W, C]

  int64_t windowSize;
  int64_t shiftSize;
  double dropPathRate;
  torch::Tensor attn_mask;       // [windows, w², w²] for shifted blocks, undefined otherwise
  torch::Tensor window_order;    // shifted blocks: shiftedWindowOrder of the block's map (recomputed, never loaded)
  torch::Tensor window_inverse;  // and its inverse
  LayerNorm norm1{nullptr};
  WindowAttention attn{nullptr};
  LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(SwinBlock);

class PatchMergingImpl : public torch::nn::Module {
 public:
  explicit PatchMergingImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x, ForwardContext& context);  // [B, H, W, C] -> [B, H/2, W/2, 2C]

  LayerNorm norm{nullptr};
  Linear reduction{nullptr};
};
TORCH_MODULE(PatchMerging);

class SwinStageImpl : public torch::nn::Module {
 public:
  SwinStageImpl(int64_t inDim, int64_t dim, int64_t inputResolution, bool downsample, int64_t depth, int64_t numHeads,
                int64_t windowSize, double mlpRatio, const std::vector<double>& dropPathRates);
  torch::Tensor forward(torch::Tensor x, ForwardContext& context);

  PatchMerging downsample{nullptr};
  torch::nn::ModuleList blocks{nullptr};
};
TORCH_MODULE(SwinStage);

class SwinPatchEmbedImpl : public torch::nn::Module {
 public:
  SwinPatchEmbedImpl(int64_t patchSize, int64_t embedDim);
  torch::Tensor forward(const torch::Tensor& images);  // -> [B, H/P, W/P, C]

  torch::nn::Conv2d proj{nullptr};
  LayerNorm norm{nullptr};
};
TORCH_MODULE(SwinPatchEmbed);

class SwinHeadImpl : public torch::nn::Module {
 public:
  SwinHeadImpl(int64_t features, int64_t numClasses);
  Linear fc{nullptr};
};
TORCH_MODULE(SwinHead);

class SwinTransformer : public Backbone {
 public:
  explicit SwinTransformer(const SwinConfig& config);

  torch::Tensor forwardFeatures(const torch::Tensor& images, ForwardContext& context) override;
  torch::Tensor forwardHead(const torch::Tensor& features, ForwardContext& context) override;
  std::string family() const override { return "swin"; }
  int64_t imageSize() const override { return config.imgSize; }
  int64_t numClasses() const override { return config.numClasses; }
  std::vector<std::string> headParameterNames() const override;
  std::string noiseUnitOf(const std::string& linearPath) const override;
  int64_t defaultNoiseBlockStart() const override { return 0; }
  bool exemptFromWeightDecay(const std::string& name) const override {
    return name.find("relative_position_bias_table") != std::string::npos;
  }
  // timm's: the recomputed relative_position_index and attn_mask buffers dropped, and the pre-0.9 layout
  // (PatchMerging at the end of the previous stage, `head.*` instead of `head.fc.*`) renamed.
  void filterCheckpoint(std::vector<NamedTensor>& tensors, std::vector<std::string>& ignored) const override;
  std::shared_ptr<Backbone> createLike() const override;

  const SwinConfig config;
  SwinPatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList layers{nullptr};
  LayerNorm norm{nullptr};
  SwinHead head{nullptr};

 protected:
  void initialiseHead() override;
};

// relative_position_index[i, j] = (hi - hj + w - 1)(2w - 1) + (wi - wj + w - 1) for tokens i, j of a w×w window.
torch::Tensor relativePositionIndex(int64_t windowSize);
// The shift mask of a resolution×resolution map: [windows, w², w²], 0 within a region, -100 across regions.
torch::Tensor shiftedWindowMask(int64_t resolution, int64_t windowSize, int64_t shiftSize);

}  // namespace pace::models
