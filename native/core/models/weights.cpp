#include "models/weights.h"

#include <cmath>
#include <map>
#include <set>

#include "errors.h"
#include "io/checked_load.h"
#include "io/npz.h"
#include "models/checkpoint_resampling.h"
#include "models/layers.h"
#include "tensor/dtype.h"
#include "tensor/finite_as.h"
#include "text.h"

namespace pace::models {

namespace {

std::string lowerExtension(const std::string& path) {
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string joinNames(const std::vector<std::string>& names, size_t limit = 8) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < limit; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > limit) text += ", ... (" + std::to_string(names.size()) + " in all)";
  return text;
}

// timm's checkpoint filter for safetensors state dicts, the parts every family shares: a DataParallel
// `module.` prefix and the dropped `pre_logits`; then the family's own (Backbone::filterCheckpoint).
std::vector<NamedTensor> filterStateDict(std::vector<NamedTensor> tensors, const Backbone& model,
                                         std::vector<std::string>& ignored) {
  std::vector<NamedTensor> kept;
  for (auto& named : tensors) {
    if (startsWith(named.name, "module.")) named.name.erase(0, 7);
    if (startsWith(named.name, "pre_logits.")) {
      ignored.push_back(named.name);
      continue;
    }
    kept.push_back(std::move(named));
  }
  model.filterCheckpoint(kept, ignored);
  return kept;
}

// 2-D kernels [in, out] -> [out, in]; the attention kernels reshape first (see timm-layouts.md §4).
torch::Tensor flaxDenseToLinear(const torch::Tensor& kernel) { return kernel.t().contiguous(); }

// timm's filters fit three tensors of another geometry to the model: a ViT's position embedding (another grid), a
// patch embedding (another patch size) and Swin's relative-position tables (another window). The tensor resampled
// (bicubic with antialias from a state dict, bilinear from Google's .npz), or undefined when it is not one of them;
// ShapeError when it is but cannot be resampled.
torch::Tensor resampledToFit(const std::string& name, const torch::Tensor& value, const torch::Tensor& target,
                             bool fromNpz) {
  const auto fromValues = [&] {  // a dimension of 0: nothing to resample from (libtorch would fail in interpolate)
    if (value.numel() == 0)
      throw ShapeError("the checkpoint's tensor of shape " + shapeToString(value.sizes().vec()) +
                       " holds no values to resample");
  };
  if (name == "pos_embed" && value.dim() == 3 && value.size(0) == 1 && value.size(2) == target.size(2)) {
    fromValues();
    const int64_t newGrid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(target.size(1) - 1))));
    return resamplePositionEmbedding(value, newGrid, 1, /*bicubicAntialias=*/!fromNpz);
  }
  if (name == "patch_embed.proj.weight" && value.dim() == 4 && value.size(0) == target.size(0) &&
      value.size(1) == target.size(1)) {
    fromValues();
    return resamplePatchEmbedding(value, target.size(2), target.size(3), /*bicubicAntialias=*/!fromNpz);
  }
  if (endsWith(name, ".relative_position_bias_table") && value.dim() == 2 && value.size(1) == target.size(1)) {
    fromValues();
    const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(target.size(0)))));
    return resizeRelativePositionTable(value, (side + 1) / 2);
  }
  return {};
}

}  // namespace

std::vector<NamedTensor> googleVitToTimm(const std::vector<NamedTensor>& arrays, int64_t depth,
                                         std::vector<std::string>& ignored) {
  std::map<std::string, torch::Tensor> byName;
  for (const auto& named : arrays) byName[named.name] = named.tensor;

  std::string prefix;
  bool bigVision = false;
  if (byName.count("opt/target/embedding/kernel")) {
    prefix = "opt/target/";
  } else if (byName.count("params/embedding/kernel")) {
    prefix = "params/";
    bigVision = true;
  }
  std::set<std::string> used;
  const auto take = [&](const std::string& key) -> torch::Tensor {
    const auto it = byName.find(prefix + key);
    if (it == byName.end()) return {};
    used.insert(it->first);
    return it->second;
  };

  std::vector<NamedTensor> out;
  const auto put = [&](const std::string& name, const torch::Tensor& value) {
    if (value.defined()) out.push_back({name, value});
  };
  put("cls_token", take("cls"));
  if (auto kernel = take("embedding/kernel"); kernel.defined())
    put("patch_embed.proj.weight", kernel.permute({3, 2, 0, 1}).contiguous());
  put("patch_embed.proj.bias", take("embedding/bias"));
  put("pos_embed", take(bigVision ? "pos_embedding" : "Transformer/posembed_input/pos_embedding"));
  put("norm.weight", take("Transformer/encoder_norm/scale"));
  put("norm.bias", take("Transformer/encoder_norm/bias"));
  if (auto kernel = take("head/kernel"); kernel.defined()) put("head.weight", flaxDenseToLinear(kernel));
  put("head.bias", take("head/bias"));

  const std::string attention = bigVision ? "MultiHeadDotProductAttention_0" : "MultiHeadDotProductAttention_1";
  const std::string secondNorm = bigVision ? "LayerNorm_1" : "LayerNorm_2";
  const std::string mlp = bigVision ? "MlpBlock_0" : "MlpBlock_3";
  for (int64_t i = 0; i < depth; ++i) {
    const std::string block = "Transformer/encoderblock_" + std::to_string(i) + "/";
    const std::string to = "blocks." + std::to_string(i) + ".";
    put(to + "norm1.weight", take(block + "LayerNorm_0/scale"));
    put(to + "norm1.bias", take(block + "LayerNorm_0/bias"));
    put(to + "norm2.weight", take(block + secondNorm + "/scale"));
    put(to + "norm2.bias", take(block + secondNorm + "/bias"));
    std::vector<torch::Tensor> kernels, biases;
    for (const char* part : {"query", "key", "value"}) {
      const torch::Tensor kernel = take(block + attention + "/" + part + "/kernel");  // [in, heads, hd]
      const torch::Tensor bias = take(block + attention + "/" + part + "/bias");      // [heads, hd]
      if (kernel.defined()) kernels.push_back(kernel.flatten(1).t());
      if (bias.defined()) biases.push_back(bias.flatten());
    }
    if (kernels.size() == 3) put(to + "attn.qkv.weight", torch::cat(kernels, 0).contiguous());
    if (biases.size() == 3) put(to + "attn.qkv.bias", torch::cat(biases, 0));
    if (auto kernel = take(block + attention + "/out/kernel"); kernel.defined())  // [heads, hd, out]
      put(to + "attn.proj.weight", kernel.flatten(0, 1).t().contiguous());
    put(to + "attn.proj.bias", take(block + attention + "/out/bias"));
    if (auto kernel = take(block + mlp + "/Dense_0/kernel"); kernel.defined())
      put(to + "mlp.fc1.weight", flaxDenseToLinear(kernel));
    put(to + "mlp.fc1.bias", take(block + mlp + "/Dense_0/bias"));
    if (auto kernel = take(block + mlp + "/Dense_1/kernel"); kernel.defined())
      put(to + "mlp.fc2.weight", flaxDenseToLinear(kernel));
    put(to + "mlp.fc2.bias", take(block + mlp + "/Dense_1/bias"));
  }
  for (const auto& named : arrays) {
    if (used.count(named.name)) continue;
    if (named.name.find("pre_logits/") != std::string::npos) {
      ignored.push_back(named.name);
    } else {
      out.push_back({named.name, named.tensor});  // reported as unexpected by the caller
    }
  }
  return out;
}

LoadReport loadWeights(Backbone& model, const std::string& path, bool strict,
                       const std::optional<TensorMetadata>& checkedMetadata) {
  // A pickle or a torch.save archive is recognised by its bytes (the safetensors reader names it and how to
  // convert it), whatever its extension: a safetensors file named .bin loads.
  const std::string ext = lowerExtension(path);
  LoadReport report;
  const bool fromNpz = ext == "npz";
  std::vector<NamedTensor> source;
  if (fromNpz) {
    if (!model.readsGoogleNpz())
      throw FileError("checkpoint '" + path + "': .npz files hold Google ViT weights; this is a " + model.family() +
                      " model");
    int64_t blocks = 0;
    for (const auto& item : model.named_parameters()) {
      if (startsWith(item.key(), "blocks.") && endsWith(item.key(), ".norm1.weight")) ++blocks;
    }
    std::vector<NamedTensor> arrays = loadNpz(path);
    try {
      source = googleVitToTimm(arrays, blocks, report.ignored);
    } catch (const c10::Error& error) {  // arrays of unexpected shapes cannot be rearranged
      throw FileError("checkpoint '" + path + "': the .npz arrays do not have Google ViT layouts (" +
                      error.what_without_backtrace() + ")");
    }
  } else {
    source = filterStateDict(
        (checkedMetadata ? loadSafetensorsAsChecked(path, *checkedMetadata) : loadSafetensors(path)).tensors, model,
        report.ignored);
  }

  const auto parameters = model.named_parameters();
  const std::vector<std::string> headNames = model.headParameterNames();
  const std::set<std::string> head(headNames.begin(), headNames.end());
  std::map<std::string, LinearImpl*> biasless;  // a merged model may carry biases these lack (see addBias)
  std::map<std::string, LinearImpl*> added;     // biases an earlier load (or merged()) gave such linears
  for (const auto& [linearPath, linear] : model.linears()) {
    if (!linear->bias.defined()) biasless[linearPath + ".bias"] = linear;
    if (linear->biasAdded) added[linearPath + ".bias"] = linear;
  }
  std::map<std::string, torch::Tensor> pending, addedBiases;
  std::vector<std::string> mismatches;
  std::vector<std::string> notFinite;  // the file's bytes are at fault, not the model it was made for
  std::set<std::string> seen;
  // A float tensor in the parameter's dtype, finite there; undefined, with the problem noted, otherwise.
  const auto asParameter = [&mismatches, &notFinite](const NamedTensor& named, at::ScalarType dtype) -> torch::Tensor {
    if (!at::isFloatingType(named.tensor.scalar_type())) {
      mismatches.push_back(named.name + ": expected a float tensor, the checkpoint has " +
                           dtypeName(named.tensor.scalar_type()));
      return {};
    }
    std::string problem;
    torch::Tensor value = finiteAs(named.tensor, dtype, problem);
    if (!value.defined()) notFinite.push_back(named.name + ": " + problem);
    return value;
  };
  bool resetHead = false;
  for (auto& named : source) {
    seen.insert(named.name);
    const torch::Tensor* target = parameters.find(named.name);
    if (!target) {
      const auto linear = biasless.find(named.name);
      if (linear != biasless.end() && named.tensor.dim() == 1 && named.tensor.size(0) == linear->second->outFeatures) {
        const torch::Tensor value = asParameter(named, linear->second->weight.scalar_type());
        if (value.defined()) addedBiases[named.name] = value;
      } else if (model.numClasses() == 0 && startsWith(named.name, "head.")) {
        report.ignored.push_back(named.name);  // a headless model takes a classifier's backbone, as timm does
      } else {
        report.unexpected.push_back(named.name);
      }
      continue;
    }
    torch::Tensor value = asParameter(named, target->scalar_type());
    if (!value.defined()) continue;
    if (value.sizes() != target->sizes()) {
      torch::Tensor resampled;
      try {
        resampled = resampledToFit(named.name, value, *target, fromNpz);
      } catch (const ShapeError& error) {  // reported with the other mismatches, naming the file
        mismatches.push_back(named.name + ": " + error.what());
        continue;
      } catch (const c10::Error& error) {  // what libtorch refuses in a resampling: the file's, not ours
        mismatches.push_back(named.name + ": cannot be resampled to " + shapeToString(target->sizes().vec()) + ": " +
                             error.what_without_backtrace());
        continue;
      }
      if (resampled.defined()) {
        value = resampled;
        report.resized.push_back(named.name);
      } else if (head.count(named.name)) {
        resetHead = true;
        continue;
      } else {
        mismatches.push_back(named.name + ": the model has " + shapeToString(target->sizes().vec()) +
                             ", the checkpoint " + shapeToString(value.sizes().vec()));
        continue;
      }
    }
    pending[named.name] = value;
  }
  for (const auto& item : parameters) {
    if (seen.count(item.key())) continue;
    if (added.count(item.key())) continue;  // weights without it: the linear goes back to having none
    if (head.count(item.key())) {
      resetHead = true;
    } else if (!isAdapterParameter(item.key())) {  // adapters are not a backbone's
      report.missing.push_back(item.key());
    }
  }
  if (resetHead) {
    for (const auto& name : headNames) pending.erase(name);
    report.reinitialized = headNames;
  }
  // An adapter attached to a linear without its bias, or with it, was built for that: its δb scales the bias
  // (LoRA-mul), which dropping it would leave scaling nothing (every later forward failing) and adding it would
  // leave unscaled. Such a change waits for a model without adapters.
  const auto adapterBuiltFor = [&mismatches](const std::string& name, const LinearImpl& linear, bool hadBias) {
    if (!linear.adapter || !linear.adapter->scalesBias()) return;
    mismatches.push_back(name + ": the linear's adapters were added to it " + (hadBias ? "with" : "without") +
                         " this bias, which the checkpoint " + (hadBias ? "lacks" : "has") +
                         " (load such weights before addAdapters)");
  };
  for (const auto& [name, linear] : added) {
    if (!seen.count(name)) adapterBuiltFor(name, *linear, true);
  }
  for (const auto& [name, value] : addedBiases) adapterBuiltFor(name, *biasless[name], false);
  if (!notFinite.empty()) {
    throw FileError("checkpoint '" + path +
                    "' holds values that are not finite (a damaged file, or one saved from a diverged model): " +
                    joinNames(notFinite, 6));
  }
  const bool incomplete = strict && (!report.missing.empty() || !report.unexpected.empty());
  if (!mismatches.empty() || incomplete) {
    std::string problem = "checkpoint '" + path + "' does not match this " + model.family() + " model:";
    if (incomplete && !report.missing.empty()) problem += " missing " + joinNames(report.missing) + ";";
    if (incomplete && !report.unexpected.empty()) problem += " unexpected " + joinNames(report.unexpected) + ";";
    if (!mismatches.empty()) problem += " tensors that do not fit: " + joinNames(mismatches, 6) + ";";
    if (incomplete) problem += " (load with strict: false to accept a partial match)";
    throw ShapeError(problem);
  }

  torch::NoGradGuard noGrad;
  for (const auto& [name, value] : pending) {
    parameters[name].copy_(value);
    report.loaded.push_back(name);
  }
  for (const auto& [name, value] : addedBiases) {
    biasless[name]->addBias(value);
    report.loaded.push_back(name);
  }
  for (const auto& [name, linear] : added) {
    if (!seen.count(name)) linear->dropAddedBias();
  }
  if (resetHead) model.resetHead();
  return report;
}

}  // namespace pace::models
