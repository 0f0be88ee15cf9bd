#include "models/swin.h"

#include <cmath>
#include <regex>

#include "errors.h"
#include "models/family_registry.h"
#include "models/window_order.h"
#include "text.h"

namespace pace::models {

namespace {

constexpr double kLayerNormEps = 1e-5;

// [B, H, W, C] -> [B·(H/w)·(W/w), w², C]: batch-major, then window row, then window column.
torch::Tensor partitionWindows(const torch::Tensor& x, int64_t w) {
  const int64_t b = x.size(0), h = x.size(1), wd = x.size(2), c = x.size(3);
  return x.view({b, h / w, w, wd / w, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, w * w, c});
}

torch::Tensor reverseWindows(const torch::Tensor& windows, int64_t w, int64_t h, int64_t wd) {
  const int64_t c = windows.size(-1);
  return windows.view({-1, h / w, wd / w, w, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, h, wd, c});
}

}  // namespace

void SwinConfig::validate() const {
  const auto positive = [](int64_t value, const std::string& name) {
    if (value < 1) throw OptionError("swin config: " + name + " must be >= 1, got " + std::to_string(value));
  };
  positive(imgSize, "imgSize");
  positive(patchSize, "patchSize");
  positive(windowSize, "windowSize");
  positive(embedDim, "embedDim");
  if (depths.empty()) throw OptionError("swin config: depths must name at least one stage");
  if (depths.size() != numHeads.size())
    throw OptionError("swin config: depths has " + std::to_string(depths.size()) + " stages but numHeads has " +
                      std::to_string(numHeads.size()));
  if (imgSize % patchSize != 0) throw OptionError("swin config: imgSize is not a multiple of patchSize");
  int64_t resolution = imgSize / patchSize;
  for (size_t s = 0; s < depths.size(); ++s) {
    positive(depths[s], "depths[" + std::to_string(s) + "]");
    positive(numHeads[s], "numHeads[" + std::to_string(s) + "]");
    if (s > 0) {
      if (resolution % 2 != 0)
        throw OptionError("swin config: stage " + std::to_string(s) + " input " + std::to_string(resolution) + "x" +
                          std::to_string(resolution) + " cannot be merged (odd size)");
      resolution /= 2;
    }
    const int64_t dim = embedDim << s;
    if (dim % numHeads[s] != 0)
      throw OptionError("swin config: stage " + std::to_string(s) + " width " + std::to_string(dim) +
                        " is not a multiple of numHeads[" + std::to_string(s) + "]");
    if (resolution > windowSize && resolution % windowSize != 0)
      throw OptionError("swin config: stage " + std::to_string(s) + " resolution " + std::to_string(resolution) +
                        " is not a multiple of windowSize " + std::to_string(windowSize));
  }
  if (!(mlpRatio > 0)) throw OptionError("swin config: mlpRatio must be > 0");
  if (numClasses < 0) throw OptionError("swin config: numClasses must be >= 0");
  if (!(dropPathRate >= 0 && dropPathRate < 1)) throw OptionError("swin config: dropPathRate must be in [0, 1)");
}

torch::Tensor relativePositionIndex(int64_t w) {
  const torch::Tensor coords = torch::arange(w, torch::kLong);
  const auto grid = torch::meshgrid({coords, coords}, "ij");
  const torch::Tensor rows = grid[0].flatten(), cols = grid[1].flatten();
  const torch::Tensor dr = rows.unsqueeze(1) - rows.unsqueeze(0) + (w - 1);
  const torch::Tensor dc = cols.unsqueeze(1) - cols.unsqueeze(0) + (w - 1);
  return dr * (2 * w - 1) + dc;
}

torch::Tensor shiftedWindowMask(int64_t resolution, int64_t w, int64_t shift) {
  const int64_t padded = (resolution + w - 1) / w * w;
  torch::Tensor labels = torch::zeros({1, padded, padded, 1});
  const std::vector<std::pair<int64_t, int64_t>> slices = {
      {0, padded - w}, {padded - w, padded - shift}, {padded - shift, padded}};
  int64_t label = 0;
  for (const auto& [r0, r1] : slices) {
    for (const auto& [c0, c1] : slices) {
      labels.slice(1, r0, r1).slice(2, c0, c1).fill_(static_cast<double>(label++));
    }
  }
  const torch::Tensor windows = partitionWindows(labels, w).squeeze(-1);  // [nW, w²]
  const torch::Tensor difference = windows.unsqueeze(1) - windows.unsqueeze(2);
  return torch::zeros_like(difference).masked_fill_(difference != 0, -100.0);
}

WindowAttentionImpl::WindowAttentionImpl(int64_t dim, int64_t numHeads_, int64_t windowSize_)
    : numHeads(numHeads_), windowSize(windowSize_) {
  relative_position_bias_table = register_parameter(
      "relative_position_bias_table", torch::zeros({(2 * windowSize - 1) * (2 * windowSize - 1), numHeads}));
  relative_position_index = register_buffer("relative_position_index", relativePositionIndex(windowSize));
  qkv = register_module("qkv", Linear(dim, 3 * dim));
  proj = register_module("proj", Linear(dim, dim));
  torch::NoGradGuard noGrad;
  truncatedNormal(relative_position_bias_table, 0.02);
}

torch::Tensor WindowAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask, ForwardContext& context) {
  const int64_t tokens = x.size(1);
  const torch::Tensor projected = qkv(x, context);
  const torch::Tensor bias = relative_position_bias_table.index_select(0, relative_position_index.flatten())
                                 .view({tokens, tokens, numHeads})
                                 .permute({2, 0, 1});  // [heads, tokens, tokens]
  // The shift mask differs per window of an image: [windowsPerImage, heads, tokens, tokens], which repeats per image
  // (qkvAttention lays it out per window only where its kernel needs that).
  const torch::Tensor additive =
      (mask.defined() ? bias.unsqueeze(0) + mask.unsqueeze(1) : bias.unsqueeze(0)).to(projected.scalar_type());
  return proj(qkvAttention(projected, numHeads, additive), context);
}

SwinBlockImpl::SwinBlockImpl(int64_t dim, int64_t resolution, int64_t numHeads, int64_t windowSize_, int64_t shiftSize_,
                             double mlpRatio, double dropPathRate_)
    : windowSize(windowSize_), shiftSize(shiftSize_), dropPathRate(dropPathRate_) {
  if (resolution <= windowSize) {  // as timm: a window covering the whole map, and no shift
    windowSize = resolution;
    shiftSize = 0;
  }
  norm1 = register_module("norm1", layerNorm(dim, kLayerNormEps));
  attn = register_module("attn", WindowAttention(dim, numHeads, windowSize));
  norm2 = register_module("norm2", layerNorm(dim, kLayerNormEps));
  mlp = register_module("mlp", Mlp(dim, static_cast<int64_t>(dim * mlpRatio)));
  if (shiftSize > 0) {
    attn_mask = register_buffer("attn_mask", shiftedWindowMask(resolution, windowSize, shiftSize));
    const torch::Tensor order = shiftedWindowOrder(resolution, resolution, windowSize, shiftSize);
    window_order = register_buffer("window_order", order);
    window_inverse = register_buffer("window_inverse", inversePermutation(order));
  }
}

torch::Tensor SwinBlockImpl::forward(const torch::Tensor& input, ForwardContext& context) {
  const int64_t b = input.size(0), h = input.size(1), w = input.size(2), c = input.size(3);
  // Under autocast in the autocast dtype qkv reads, before the shift and the window partition, which then move
  // half the bytes, forward and backward (a cast commutes with them: the numbers are the same).
  torch::Tensor x = norm1->forwardForProduct(input);
  if (shiftSize > 0) {
    const torch::Tensor windows =
        permuteTokens(x.reshape({b, h * w, c}), window_order, window_inverse).view({-1, windowSize * windowSize, c});
    x = permuteTokens(attn(windows, attn_mask, context).reshape({b, h * w, c}), window_inverse, window_order)
            .view({b, h, w, c});
  } else {
    x = reverseWindows(attn(partitionWindows(x, windowSize), attn_mask, context), windowSize, h, w);
  }
  x = input + context.dropPath(x, dropPathRate, is_training());
  const torch::Tensor flat = x.reshape({b, h * w, c});
  return mlp(norm2->forwardForProduct(flat), context,
             LinearEpilogue::residualAdd(flat, context, dropPathRate, is_training()))
      .reshape({b, h, w, c});
}

PatchMergingImpl::PatchMergingImpl(int64_t dim) {
  norm = register_module("norm", layerNorm(4 * dim, kLayerNormEps));
  reduction = register_module("reduction", Linear(4 * dim, 2 * dim, /*bias=*/false));
}

torch::Tensor PatchMergingImpl::forward(const torch::Tensor& x, ForwardContext& context) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  // The 4C vector is [x(2i,2j), x(2i+1,2j), x(2i,2j+1), x(2i+1,2j+1)].
  const torch::Tensor merged = x.reshape({b, h / 2, 2, w / 2, 2, c}).permute({0, 1, 3, 4, 2, 5}).flatten(3);
  return reduction(norm->forwardForProduct(merged), context);
}

SwinStageImpl::SwinStageImpl(int64_t inDim, int64_t dim, int64_t inputResolution, bool withDownsample, int64_t depth,
                             int64_t numHeads, int64_t windowSize, double mlpRatio,
                             const std::vector<double>& dropPathRates) {
  int64_t resolution = inputResolution;
  if (withDownsample) {
    downsample = register_module("downsample", PatchMerging(inDim));
    resolution /= 2;
  }
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t j = 0; j < depth; ++j) {
    blocks->push_back(
        SwinBlock(dim, resolution, numHeads, windowSize, j % 2 == 0 ? 0 : windowSize / 2, mlpRatio, dropPathRates[j]));
  }
}

torch::Tensor SwinStageImpl::forward(torch::Tensor x, ForwardContext& context) {
  if (downsample) x = downsample(x, context);
  for (const auto& block : *blocks) x = block->as<SwinBlock>()->forward(x, context);
  return x;
}

SwinPatchEmbedImpl::SwinPatchEmbedImpl(int64_t patchSize, int64_t embedDim) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, embedDim, patchSize).stride(patchSize)));
  torchDefaultInit(proj->weight,
                   proj->bias);  // again, from the model's generator (the Conv2d drew from the global one)
  norm = register_module("norm", layerNorm(embedDim, kLayerNormEps));
}

torch::Tensor SwinPatchEmbedImpl::forward(const torch::Tensor& images) {
  return norm(proj(images).permute({0, 2, 3, 1}));
}

SwinHeadImpl::SwinHeadImpl(int64_t features, int64_t numClasses) {
  fc = register_module("fc", Linear(features, numClasses));
  fc->isHead = true;
}

SwinTransformer::SwinTransformer(const SwinConfig& config_) : config((config_.validate(), config_)) {
  patch_embed = register_module("patch_embed", SwinPatchEmbed(config.patchSize, config.embedDim));
  layers = register_module("layers", torch::nn::ModuleList());
  int64_t total = 0;
  for (int64_t depth : config.depths) total += depth;
  const std::vector<double> rates = linearDropPathRates(config.dropPathRate, total);
  int64_t resolution = config.imgSize / config.patchSize, offset = 0, dim = config.embedDim;
  for (size_t s = 0; s < config.depths.size(); ++s) {
    const int64_t stageDim = config.embedDim << s;
    const std::vector<double> stageRates(rates.begin() + offset, rates.begin() + offset + config.depths[s]);
    layers->push_back(SwinStage(dim, stageDim, resolution, s > 0, config.depths[s], config.numHeads[s],
                                config.windowSize, config.mlpRatio, stageRates));
    if (s > 0) resolution /= 2;
    offset += config.depths[s];
    dim = stageDim;
  }
  norm = register_module("norm", layerNorm(dim, kLayerNormEps));
  if (config.numClasses > 0) head = register_module("head", SwinHead(dim, config.numClasses));
}

torch::Tensor SwinTransformer::forwardFeatures(const torch::Tensor& images, ForwardContext& context) {
  checkImages(images);
  // Swin's noise schedule can start in any stage; the copies are stacked right after the (frozen) patch embedding.
  torch::Tensor x = context.duplicateBatch(patch_embed(images));
  for (const auto& stage : *layers) x = stage->as<SwinStage>()->forward(x, context);
  return norm(x);
}

torch::Tensor SwinTransformer::forwardHead(const torch::Tensor& features, ForwardContext& context) {
  const torch::Tensor pooled = features.mean({1, 2});
  return head ? head->fc(pooled, context) : pooled;
}

std::vector<std::string> SwinTransformer::headParameterNames() const {
  if (!head) return {};
  return {"head.fc.weight", "head.fc.bias"};
}

void SwinTransformer::initialiseHead() {
  if (head) torchDefaultInit(head->fc->weight, head->fc->bias);
}

std::string SwinTransformer::noiseUnitOf(const std::string& linearPath) const {
  // "layers.S.blocks.J.x" -> "layers.S.blocks.J"; "layers.S.downsample.x" belongs to the stage's first block.
  static const std::regex block(R"(^(layers\.\d+)\.(blocks\.\d+|downsample)\.)");
  std::smatch match;
  if (std::regex_search(linearPath, match, block)) {
    return match[1].str() + "." + (match[2] == "downsample" ? std::string("blocks.0") : match[2].str());
  }
  return linearPath.substr(0, linearPath.find('.'));
}

std::shared_ptr<Backbone> SwinTransformer::createLike() const { return std::make_shared<SwinTransformer>(config); }

void SwinTransformer::filterCheckpoint(std::vector<NamedTensor>& tensors, std::vector<std::string>& ignored) const {
  // timm < 0.9 put each stage's downsample at its end (layers.0.downsample) and the head's linear at head.*; known
  // by those names, not by a missing head.fc.weight, which a headless model's own file lacks too.
  bool oldLayout = false;
  for (const auto& named : tensors) {
    if (startsWith(named.name, "layers.0.downsample.") ||
        (startsWith(named.name, "head.") && !startsWith(named.name, "head.fc."))) {
      oldLayout = true;
    }
  }
  std::vector<NamedTensor> kept;
  for (auto& named : tensors) {
    const std::string& name = named.name;
    if (endsWith(name, "relative_position_index") || endsWith(name, "attn_mask")) {
      ignored.push_back(name);
      continue;
    }
    if (oldLayout) {
      // "layers.N.downsample.*" -> "layers.{N+1}.downsample.*" (scanned by hand: names are untrusted input).
      const size_t digits = name.find_first_not_of("0123456789", 7);
      if (startsWith(name, "layers.") && digits != std::string::npos && digits > 7 && digits - 7 <= 4 &&
          name.compare(digits, 12, ".downsample.") == 0) {
        named.name = "layers." + std::to_string(std::stoi(name.substr(7, digits - 7)) + 1) + name.substr(digits);
      } else if (startsWith(name, "head.")) {
        named.name = "head.fc." + name.substr(5);
      }
    }
    kept.push_back(std::move(named));
  }
  tensors = std::move(kept);
}

BackboneBuilder configureSwin(const SpecFields& spec) {
  SwinConfig config;
  readSharedFields(config, spec);
  config.windowSize = spec.integer("windowSize");
  config.depths = spec.integers("depths");
  config.numHeads = spec.integers("numHeads");
  return [config] { return std::make_shared<SwinTransformer>(config); };
}

}  // namespace pace::models
