#include "peft/setup.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "errors.h"
#include "io/checked_load.h"
#include "models/layers.h"
#include "peft/adapter.h"
#include "tensor/dtype.h"
#include "tensor/finite_as.h"

namespace pace::peft {

namespace {

bool matchesTarget(const std::string& path, const std::vector<std::string>& targets) {
  for (const auto& target : targets) {
    if (path == target) return true;
    if (path.size() > target.size() && path.compare(path.size() - target.size(), target.size(), target) == 0 &&
        path[path.size() - target.size() - 1] == '.')
      return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> addAdapters(models::Backbone& model, const AdapterSetup& setup) {
  models::InitRandomScope random(model.initGenerator());
  for (const auto& item : model.named_parameters()) {
    if (isAdapterParameter(item.key())) throw StateError("the model already has adapters");
  }
  const auto linears = model.linears();
  const std::vector<std::string> headNames = model.headParameterNames();
  const std::set<std::string> head(headNames.begin(), headNames.end());
  const bool full = setup.type == "full";
  const bool linearProbe = setup.type == "linear";
  if ((full || linearProbe) && !setup.targets.empty())
    throw OptionError("adapter type '" + setup.type + "' adds no adapters (it trains " +
                      (full ? "every parameter" : "the head alone") + "): it takes no targets");
  if (!full && !linearProbe) {
    adapterFactory(setup.type);  // an unknown type is refused before anything changes
    // Everything is checked before the first adapter is attached, so a refused setup leaves the model as it was.
    std::set<std::string> unmatched(setup.targets.begin(), setup.targets.end());
    std::vector<models::LinearImpl*> chosen;
    for (const auto& [path, linear] : linears) {
      if (head.count(path + ".weight")) continue;
      if (!setup.targets.empty() && !matchesTarget(path, setup.targets)) continue;
      for (const auto& target : setup.targets) {
        if (matchesTarget(path, {target})) unmatched.erase(target);
      }
      checkAdapterFits(*linear, setup.rank);
      chosen.push_back(linear);
    }
    if (!unmatched.empty()) {
      const std::string& target = *unmatched.begin();
      for (const auto& [path, linear] : linears) {
        if (head.count(path + ".weight") && matchesTarget(path, {target}))
          throw OptionError("adapter target '" + target + "' names the classifier head (" + path +
                            "), which takes no adapter: it trains in full with the adapters");
      }
      throw OptionError("adapter target '" + target + "' names no Linear of this model");
    }
    for (auto* linear : chosen) attachAdapter(*linear, setup.type, setup.rank);
  }
  std::vector<std::string> trainable;
  for (auto& item : model.named_parameters()) {
    const bool trains = full || head.count(item.key()) || isAdapterParameter(item.key());
    item.value().set_requires_grad(trains);
    if (trains) trainable.push_back(item.key());
  }
  return trainable;
}

std::vector<NamedTensor> trainableParameters(models::Backbone& model) {
  std::vector<NamedTensor> result;
  for (const auto& item : model.named_parameters()) {
    if (item.value().requires_grad()) result.push_back({item.key(), item.value()});
  }
  return result;
}

std::shared_ptr<models::Backbone> mergedCopy(models::Backbone& model) {
  // The copy's random initialisation is overwritten at once: drawn from a throwaway generator, it leaves the
  // model's generator as it was.
  std::shared_ptr<models::Backbone> copy;
  {
    models::InitRandomScope throwaway(models::newInitGenerator(0));
    copy = model.createLike();
  }
  torch::NoGradGuard noGrad;
  auto target = copy->named_parameters();
  const auto device = model.parameters().front().device();
  copy->to(device);
  std::map<std::string, models::LinearImpl*> copyLinears;
  for (const auto& [path, linear] : copy->linears()) copyLinears[path] = linear;
  for (const auto& item : model.named_parameters()) {
    if (isAdapterParameter(item.key())) continue;
    if (at::Tensor* same = target.find(item.key())) {
      same->copy_(item.value());
      continue;
    }
    // A bias the model gained after it was made (a merged VPT shift loaded from a checkpoint): the copy gains it.
    const size_t dot = item.key().rfind('.');
    const auto linear = copyLinears.find(item.key().substr(0, dot));
    if (item.key().substr(dot + 1) != "bias" || linear == copyLinears.end())
      throw Error(ErrorCode::Internal, "merging: the model's parameter '" + item.key() + "' has no place in a copy");
    linear->second->addBias(item.value());
  }
  for (const auto& [path, linear] : model.linears()) {
    if (!linear->adapter) continue;
    const auto [weight, bias] = linear->adapter->mergedWeightAndBias(*linear);
    models::LinearImpl& merged = *copyLinears.at(path);
    merged.weight.copy_(weight);
    if (!bias.defined()) continue;
    if (merged.bias.defined()) {
      merged.bias.copy_(bias);
    } else {
      merged.addBias(bias);  // a VPT shift on a bias-less linear (Swin's downsample.reduction)
    }
  }
  copy->train(false);
  return copy;
}

std::vector<NamedTensor> mergedStateDict(models::Backbone& model) {
  bool adapted = false;
  for (const auto& item : model.named_parameters()) adapted = adapted || isAdapterParameter(item.key());
  std::shared_ptr<models::Backbone> plain = adapted ? mergedCopy(model) : nullptr;
  std::vector<NamedTensor> result;
  for (const auto& item : (plain ? *plain : model).named_parameters()) result.push_back({item.key(), item.value()});
  return result;
}

std::string frozenWeightsFingerprint(models::Backbone& model) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto add = [&crc](const void* data, size_t size) { crc = crc32_z(crc, static_cast<const Bytef*>(data), size); };
  for (const auto& item : model.named_parameters()) {
    if (item.value().requires_grad()) continue;
    add(item.key().data(), item.key().size());
    for (const int64_t size : item.value().sizes()) add(&size, sizeof size);
    const at::Tensor flat = item.value().detach().reshape(-1);
    const int64_t count = flat.numel(), edge = std::min<int64_t>(count, 4096);
    for (const at::Tensor& part : {flat.slice(0, 0, edge), flat.slice(0, count - edge, count)}) {
      const at::Tensor bytes = part.to(at::kCPU).contiguous();
      add(bytes.data_ptr(), bytes.nbytes());
    }
  }
  char text[24];
  std::snprintf(text, sizeof text, "crc32:%08lx", static_cast<unsigned long>(crc));
  return text;
}

AdapterFileLeeway adapterFileLeeway(models::Backbone& model) {
  AdapterFileLeeway leeway;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const auto* linear = dynamic_cast<const models::LinearImpl*>(item.value().get());
    const auto* adapter = linear ? dynamic_cast<const Adapter*>(linear->adapter.get()) : nullptr;
    if (!adapter) continue;
    if (!adapter->referenceOnlyParameter().empty())
      leeway.mayHold.insert(item.key() + "." + adapter->referenceOnlyParameter());
    if (!adapter->formerlyAbsentParameter().empty())
      leeway.mayLack.insert(item.key() + "." + adapter->formerlyAbsentParameter());
  }
  return leeway;
}

namespace {

// The official PACE code names a tensor through the modules it wraps a linear in: `<linear>.adapter.delta_*` (the
// noise wrapper of a PACE run) and `head.base_module.*` (the head's residual wrapper). Read as the linear's own.
std::string withoutReferenceWrappers(const std::string& name) {
  std::string unwrapped;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = std::min(name.find('.', start), name.size());
    const std::string part = name.substr(start, end - start);
    if (part != "adapter" && part != "base_module") unwrapped += (unwrapped.empty() ? "" : ".") + part;
    start = end + 1;
  }
  return unwrapped;
}

}  // namespace

void loadAdapters(models::Backbone& model, const std::string& path,
                  const std::optional<TensorMetadata>& checkedMetadata) {
  const SafetensorsContents contents =
      checkedMetadata ? loadSafetensorsAsChecked(path, *checkedMetadata) : loadSafetensors(path);
  std::map<std::string, torch::Tensor> byName;
  std::map<std::string, std::string> fileNameOf;
  for (const auto& named : contents.tensors) {
    const std::string name = withoutReferenceWrappers(named.name);
    if (fileNameOf.count(name)) {
      throw FileError("adapter file '" + path + "' holds both '" + fileNameOf[name] + "' and '" + named.name +
                      "', two names of " + name);
    }
    fileNameOf[name] = named.name;
    byName[name] = named.tensor;
  }
  const std::vector<NamedTensor> trainable = trainableParameters(model);
  const AdapterFileLeeway leeway = adapterFileLeeway(model);
  std::vector<std::string> problems;
  std::set<std::string> used, zeroed;
  for (const auto& param : trainable) {
    const auto found = byName.find(param.name);
    if (found == byName.end() && leeway.mayLack.count(param.name)) {
      zeroed.insert(param.name);
      continue;
    }
    if (found == byName.end()) {
      problems.push_back(param.name + " is missing");
      continue;
    }
    used.insert(param.name);
    if (!at::isFloatingType(found->second.scalar_type())) {
      problems.push_back(param.name + ": expected a float tensor, the file has " +
                         dtypeName(found->second.scalar_type()));
    } else if (found->second.sizes() != param.tensor.sizes())
      problems.push_back(param.name + ": the model has " + shapeToString(param.tensor.sizes().vec()) + ", the file " +
                         shapeToString(found->second.sizes().vec()));
  }
  for (const auto& [name, tensor] : byName) {
    if (used.count(name)) continue;
    if (leeway.mayHold.count(name) && tensor.dim() == 1) continue;  // the reference's, with no effect here
    problems.push_back(name + " is not a trainable parameter of this model");
  }
  if (!problems.empty()) {
    std::string text;
    for (size_t i = 0; i < problems.size() && i < 6; ++i) text += (i ? "; " : "") + problems[i];
    if (problems.size() > 6) text += "; ... (" + std::to_string(problems.size()) + " problems)";
    throw ShapeError("adapter file '" + path +
                     "' does not fit this model (were the adapters built for another backbone, "
                     "type or rank?): " +
                     text);
  }
  for (const auto& param : trainable) {
    if (zeroed.count(param.name)) continue;
    at::Tensor& value = byName[param.name];
    std::string problem;
    value = finiteAs(value, param.tensor.scalar_type(), problem);
    if (!value.defined()) throw FileError("adapter file '" + path + "': '" + param.name + "' " + problem);
  }
  torch::NoGradGuard noGrad;
  for (const auto& param : trainable) {
    if (zeroed.count(param.name))
      param.tensor.zero_();
    else
      param.tensor.copy_(byName[param.name]);
  }
}

}  // namespace pace::peft
