// A trainer's resumable state: what a training checkpoint holds besides the model's frozen weights.
#include "errors.h"
#include "peft/setup.h"
#include "tensor/dtype.h"
#include "train/trainer.h"

namespace pace::train {

std::vector<NamedTensor> Trainer::parametersAndMoments() const {
  std::vector<NamedTensor> out;
  const auto& optimizerState = optimizer_->state();
  for (const auto& named : trainable_) {
    out.push_back({"param." + named.name, named.tensor.detach()});
    const auto found = optimizerState.find(optimizerStateKey<std::decay_t<decltype(optimizerState)>>(named.tensor));
    if (found == optimizerState.end()) continue;
    const auto& moments = static_cast<const torch::optim::AdamWParamState&>(*found->second);
    // The fused AdamW makes zero moments at step 0 for every parameter ahead of its first update (a parameter with
    // no gradient yet keeps them): no state at all, as the plain AdamW would have.
    if (moments.step() == 0) continue;
    out.push_back({"adamw." + named.name + ".exp_avg", moments.exp_avg()});
    out.push_back({"adamw." + named.name + ".exp_avg_sq", moments.exp_avg_sq()});
    out.push_back(
        {"adamw." + named.name + ".step", torch::full({}, static_cast<int64_t>(moments.step()), torch::kLong)});
  }
  return out;
}

namespace {

// An update can overflow while the loss it followed was finite (checked before the update): such a state is not a
// checkpoint anyone could continue from. All ranks hold the same parameters and moments, so all refuse alike.
void checkFinite(const std::vector<NamedTensor>& tensors) {
  torch::NoGradGuard noGrad;
  // Floating-point tensors only: the step counts are integers, and held on the host while the rest may be on a GPU.
  std::vector<const NamedTensor*> checked;
  std::vector<at::Tensor> allFinite;
  for (const auto& named : tensors) {
    if (!at::isFloatingType(named.tensor.scalar_type())) continue;
    checked.push_back(&named);
    allFinite.push_back(at::isfinite(named.tensor).all());
  }
  if (allFinite.empty() || at::stack(allFinite).all().item<bool>()) return;
  for (size_t i = 0; i < checked.size(); ++i) {
    if (allFinite[i].item<bool>()) continue;
    throw DivergedError("the trainable parameters or their AdamW moments became NaN or infinite ('" + checked[i]->name +
                        "' first) in an update that followed a finite loss (lower the learning rate or check the "
                        "data); this state is not written as a checkpoint");
  }
}

}  // namespace

void Trainer::checkFiniteState() const { checkFinite(parametersAndMoments()); }

std::vector<NamedTensor> Trainer::state() const {
  const std::vector<NamedTensor> trained = parametersAndMoments();
  checkFinite(trained);  // before the collective below
  std::vector<NamedTensor> out;
  for (const auto& named : trained) out.push_back({named.name, named.tensor.clone()});
  // Data-parallel, every rank's generator states, one row per rank ([worldSize, bytes]).
  for (const auto& [name, generator] : {std::pair<const char*, const at::Generator*>{"rng.noise", &noiseGenerator_},
                                        {"rng.drop_path", &dropPathGenerator_},
                                        {"rng.augment", &augmentGenerator_}}) {
    const at::Tensor own = generator->get_state();
    if (parallel_.worldSize() == 1) {
      out.push_back({name, own});
      continue;
    }
    std::vector<at::Tensor> all = parallel_.group().allGather(own.to(parallel_.group().device()),
                                                              std::string("gathering '") + name + "' for a checkpoint");
    out.push_back({name, at::stack(all).cpu()});
  }
  if (parallel_.worldSize() > 1)
    out.push_back({"trainer.world_size", torch::full({}, static_cast<int64_t>(parallel_.worldSize()), torch::kLong)});
  out.push_back({"trainer.iteration", torch::full({}, iteration_.load(), torch::kLong)});
  // Straight to the host (a copy on the GPU first would hold a second history there for a moment).
  if (pace_.history().defined())
    out.push_back({"pace.history", pace_.history().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true)});
  return out;
}

void Trainer::restoreState(const std::vector<NamedTensor>& state) {
  std::map<std::string, at::Tensor> byName;
  for (const auto& named : state) byName[named.name] = named.tensor;
  const auto need = [&](const std::string& name) -> const at::Tensor& {
    const auto found = byName.find(name);
    if (found == byName.end())
      throw FileError("training checkpoint lacks '" + name + "' (was it made for another model?)");
    return found->second;
  };
  // Every check comes first: a checkpoint that does not fit leaves the trainer as it was. What state() writes
  // has the trainable parameters' dtypes, int64 scalars and byte generator states; anything else is refused.
  const auto sameDtype = [&](const std::string& name, at::ScalarType expected) {
    const at::Tensor& value = need(name);
    if (value.scalar_type() != expected)
      throw FileError("training checkpoint: '" + name + "' is " + dtypeName(value.scalar_type()) + ", expected " +
                      dtypeName(expected));
  };
  const auto sameShape = [&](const std::string& name, const at::Tensor& like) {
    const at::Tensor& value = need(name);
    if (value.sizes() != like.sizes())
      throw ShapeError("training checkpoint: '" + name + "' has shape " + shapeToString(value.sizes().vec()) +
                       ", expected " + shapeToString(like.sizes().vec()));
    sameDtype(name, like.scalar_type());
  };
  // A checkpoint of an earlier version may lack an adapter parameter it did not create (loaded as zero, untrained).
  const std::set<std::string> formerlyAbsent = peft::adapterFileLeeway(*model_).mayLack;
  const auto absentThen = [&](const NamedTensor& named) {
    return formerlyAbsent.count(named.name) && !byName.count("param." + named.name);
  };
  const auto integerScalar = [&](const std::string& name) {
    sameDtype(name, at::kLong);
    if (need(name).dim() != 0) throw ShapeError("training checkpoint: '" + name + "' should be a scalar");
    return need(name).item<int64_t>();
  };
  // AdamW's bias correction divides by 1 - beta^step: a moment saved with a step under 1 would make it 0/0.
  const auto countFrom = [&](const std::string& name, int64_t least, const char* why) {
    const int64_t value = integerScalar(name);
    if (value < least)
      throw FileError("training checkpoint: '" + name + "' is " + std::to_string(value) + ", less than " +
                      std::to_string(least) + " (" + why + ")");
  };
  for (const auto& named : trainable_) {
    if (absentThen(named)) continue;
    sameShape("param." + named.name, named.tensor);
    if (byName.count("adamw." + named.name + ".step")) {
      countFrom("adamw." + named.name + ".step", 1, "moments are saved only after a step");
      sameShape("adamw." + named.name + ".exp_avg", named.tensor);
      sameShape("adamw." + named.name + ".exp_avg_sq", named.tensor);
    }
  }
  for (const char* name : {"rng.noise", "rng.drop_path", "rng.augment"}) sameDtype(name, at::kByte);
  countFrom("trainer.iteration", 0, "a count of steps");
  const int64_t savedWorld = byName.count("trainer.world_size") ? integerScalar("trainer.world_size") : 1;
  if (savedWorld != parallel_.worldSize())
    throw StateError("training checkpoint was written by " + std::to_string(savedWorld) +
                     (savedWorld == 1 ? " process" : " processes") + "; resume it with the same number (this run has " +
                     std::to_string(parallel_.worldSize()) + "): each rank continues its own random streams");
  // This rank's row of a data-parallel checkpoint; the whole state otherwise.
  const auto ownState = [&](const char* name) {
    const at::Tensor& saved = need(name);
    return savedWorld > 1 ? saved[parallel_.rank()] : saved;
  };
  followModelDevice(model_->parameters().front().device());
  for (const auto& [name, generator] : {std::pair<const char*, at::Generator*>{"rng.noise", &noiseGenerator_},
                                        {"rng.drop_path", &dropPathGenerator_},
                                        {"rng.augment", &augmentGenerator_}}) {
    if (need(name).dim() != (savedWorld > 1 ? 2 : 1) || (savedWorld > 1 && need(name).size(0) != savedWorld))
      throw ShapeError(std::string("training checkpoint: '") + name + "' should hold " +
                       (savedWorld > 1 ? "one generator state per rank" : "one generator state"));
    if (ownState(name).numel() != generator->get_state().numel())
      throw FileError(std::string("training checkpoint: '") + name +
                      "' is the state of a random generator on another " + "device than this model's " +
                      generator->device().str() + " (resume on the device it was saved on)");
    // libtorch checks a state's fields only as it is set: tried on a copy now, before anything is restored.
    try {
      generator->clone().set_state(ownState(name).contiguous());
    } catch (const c10::Error& error) {
      throw FileError(std::string("training checkpoint: '") + name + "' is not a valid random generator state (" +
                      error.msg() + ")");
    }
  }
  const peft::PaceConfig& pace = pace_.config();
  if (byName.count("pace.history") && pace.variant == peft::PaceVariant::Fast)
    sameShape("pace.history", torch::zeros({pace.datasetSize, model_->numClasses()}));
  else if (byName.count("pace.history"))
    sameDtype("pace.history", at::kFloat);
  torch::NoGradGuard noGrad;
  graphs_.invalidate();  // captured steps read the moments and generator states being replaced
  auto& optimizerState = optimizer_->state();
  for (const auto& named : trainable_) {
    const auto key = optimizerStateKey<std::decay_t<decltype(optimizerState)>>(named.tensor);
    if (absentThen(named)) {
      named.tensor.zero_();
      optimizerState.erase(key);
      continue;
    }
    named.tensor.copy_(need("param." + named.name));
    if (!byName.count("adamw." + named.name + ".step")) {
      optimizerState.erase(key);
      continue;
    }
    auto moments = std::make_unique<torch::optim::AdamWParamState>();
    moments->step(need("adamw." + named.name + ".step").item<int64_t>());
    moments->exp_avg(need("adamw." + named.name + ".exp_avg").to(named.tensor.device()).clone());
    moments->exp_avg_sq(need("adamw." + named.name + ".exp_avg_sq").to(named.tensor.device()).clone());
    optimizerState[key] = std::move(moments);
  }
  noiseGenerator_.set_state(ownState("rng.noise").contiguous());
  dropPathGenerator_.set_state(ownState("rng.drop_path").contiguous());
  augmentGenerator_.set_state(ownState("rng.augment").contiguous());
  iteration_ = need("trainer.iteration").item<int64_t>();
  pace_.setHistory(byName.count("pace.history") ? byName["pace.history"].clone() : at::Tensor());
}

}  // namespace pace::train
