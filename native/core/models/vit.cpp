#include "models/vit.h"

#include <cmath>

#include "errors.h"
#include "models/family_registry.h"

namespace pace::models {

void VitConfig::validate() const {
  const auto positive = [](int64_t value, const char* name) {
    if (value < 1)
      throw OptionError(std::string("vit config: ") + name + " must be >= 1, got " + std::to_string(value));
  };
  positive(imgSize, "imgSize");
  positive(patchSize, "patchSize");
  positive(embedDim, "embedDim");
  positive(depth, "depth");
  positive(numHeads, "numHeads");
  if (imgSize % patchSize != 0)
    throw OptionError("vit config: imgSize " + std::to_string(imgSize) + " is not a multiple of patchSize " +
                      std::to_string(patchSize));
  if (embedDim % numHeads != 0)
    throw OptionError("vit config: embedDim " + std::to_string(embedDim) + " is not a multiple of numHeads " +
                      std::to_string(numHeads));
  if (!(mlpRatio > 0)) throw OptionError("vit config: mlpRatio must be > 0");
  if (numClasses < 0) throw OptionError("vit config: numClasses must be >= 0");
  if (!(dropPathRate >= 0 && dropPathRate < 1)) throw OptionError("vit config: dropPathRate must be in [0, 1)");
  if (!(normEps > 0)) throw OptionError("vit config: normEps must be > 0");
}

VitAttentionImpl::VitAttentionImpl(int64_t dim, int64_t numHeads_) : numHeads(numHeads_) {
  qkv = register_module("qkv", Linear(dim, 3 * dim));
  proj = register_module("proj", Linear(dim, dim));
}

torch::Tensor VitAttentionImpl::forward(const torch::Tensor& x, ForwardContext& context,
                                        const LinearEpilogue& epilogue) {
  return proj(qkvAttention(qkv(x, context), numHeads), context, epilogue);
}

VitBlockImpl::VitBlockImpl(int64_t dim, int64_t numHeads, double mlpRatio, double dropPathRate_, double normEps)
    : dropPathRate(dropPathRate_) {
  norm1 = register_module("norm1", layerNorm(dim, normEps));
  attn = register_module("attn", VitAttention(dim, numHeads));
  norm2 = register_module("norm2", layerNorm(dim, normEps));
  mlp = register_module("mlp", Mlp(dim, static_cast<int64_t>(dim * mlpRatio)));
}

torch::Tensor VitBlockImpl::forward(const torch::Tensor& input, ForwardContext& context) {
  // x + dropPath(branch(x)), the add folded into the branch's last linear where it can be (models/linear_epilogue.h).
  const torch::Tensor x = attn(norm1->forwardForProduct(input), context,
                               LinearEpilogue::residualAdd(input, context, dropPathRate, is_training()));
  return mlp(norm2->forwardForProduct(x), context,
             LinearEpilogue::residualAdd(x, context, dropPathRate, is_training()));
}

VitPatchEmbedImpl::VitPatchEmbedImpl(int64_t patchSize, int64_t embedDim, bool bias) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, embedDim, patchSize).stride(patchSize).bias(bias)));
  torchDefaultInit(proj->weight,
                   proj->bias);  // again, from the model's generator (the Conv2d drew from the global one)
}

torch::Tensor VitPatchEmbedImpl::forward(const torch::Tensor& images) {
  return proj(images).flatten(2).transpose(1, 2);
}

VisionTransformer::VisionTransformer(const VitConfig& config_) : config((config_.validate(), config_)) {
  const int64_t grid = config.imgSize / config.patchSize;
  patch_embed = register_module("patch_embed", VitPatchEmbed(config.patchSize, config.embedDim, !config.preNorm));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, config.embedDim}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, grid * grid + 1, config.embedDim}));
  if (config.preNorm) norm_pre = register_module("norm_pre", layerNorm(config.embedDim, config.normEps));
  blocks = register_module("blocks", torch::nn::ModuleList());
  const std::vector<double> rates = linearDropPathRates(config.dropPathRate, config.depth);
  for (int64_t i = 0; i < config.depth; ++i) {
    blocks->push_back(VitBlock(config.embedDim, config.numHeads, config.mlpRatio, rates[i], config.normEps));
  }
  norm = register_module("norm", layerNorm(config.embedDim, config.normEps));
  if (config.numClasses > 0) {
    head = register_module("head", Linear(config.embedDim, config.numClasses));
    head->isHead = true;
  }

  torch::NoGradGuard noGrad;
  truncatedNormal(pos_embed, 0.02);
  normalInit(cls_token, 0.0, 1e-6);
}

torch::Tensor VisionTransformer::forwardFeatures(const torch::Tensor& images, ForwardContext& context) {
  checkImages(images);
  torch::Tensor x = patch_embed(images);
  x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1) + pos_embed;
  if (norm_pre) x = norm_pre(x);
  for (size_t i = 0; i < blocks->size(); ++i) {
    x = context.duplicateBatchBefore(x, static_cast<int64_t>(i));
    x = (*blocks)[i]->as<VitBlock>()->forward(x, context);
  }
  return norm(x);
}

torch::Tensor VisionTransformer::forwardHead(const torch::Tensor& features, ForwardContext& context) {
  const torch::Tensor pooled = features.select(1, 0);
  return head ? head(pooled, context) : pooled;
}

std::vector<std::string> VisionTransformer::headParameterNames() const {
  if (!head) return {};
  return {"head.weight", "head.bias"};
}

void VisionTransformer::initialiseHead() {
  if (head) torchDefaultInit(head->weight, head->bias);
}

std::string VisionTransformer::noiseUnitOf(const std::string& linearPath) const {
  if (linearPath.rfind("blocks.", 0) == 0) return linearPath.substr(0, linearPath.find('.', 7));
  return linearPath.substr(0, linearPath.find('.'));
}

std::shared_ptr<Backbone> VisionTransformer::createLike() const { return std::make_shared<VisionTransformer>(config); }

BackboneBuilder configureVit(const SpecFields& spec) {
  VitConfig config;
  readSharedFields(config, spec);
  config.depth = spec.integer("depth");
  config.numHeads = spec.integer("numHeads");
  config.preNorm = spec.flag("preNorm");
  config.normEps = spec.number("normEps");
  return [config] { return std::make_shared<VisionTransformer>(config); };
}

}  // namespace pace::models
