#include "model_handle.h"

#include <functional>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "addon_data.h"
#include "async.h"
#include "bindings.h"
#include "collective_claim.h"
#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"
#include "stop_flag.h"
#include "tensor_handle.h"
#include "type_tags.h"

namespace pace::addon {

namespace {

// A spec object's fields, for the family that reads them (the TypeScript layer has validated the spec with zod).
class JsSpecFields : public models::SpecFields {
 public:
  explicit JsSpecFields(Napi::Object spec) : spec_(spec) {}
  int64_t integer(const char* name) const override { return field(name).Int64Value(); }
  double number(const char* name) const override { return field(name).DoubleValue(); }
  std::vector<int64_t> integers(const char* name) const override {
    return shapeFromJs(spec_.Get(name), std::string("spec.") + name);
  }
  bool flag(const char* name) const override {
    const Napi::Value value = spec_.Get(name);
    if (!value.IsBoolean()) throw OptionError(std::string("spec.") + name + " must be a boolean");
    return value.As<Napi::Boolean>().Value();
  }

 private:
  Napi::Number field(const char* name) const {
    const Napi::Value value = spec_.Get(name);
    if (!value.IsNumber()) throw OptionError(std::string("spec.") + name + " must be a number");
    return value.As<Napi::Number>();
  }
  Napi::Object spec_;
};

// { names, tensors } for tensors the caller hands over to JavaScript.
Napi::Object namedTensorsToJs(Napi::Env env, const std::vector<NamedTensor>& tensors) {
  Napi::Array names = Napi::Array::New(env, tensors.size());
  Napi::Array handles = Napi::Array::New(env, tensors.size());
  for (uint32_t i = 0; i < tensors.size(); ++i) {
    names.Set(i, tensors[i].name);
    handles.Set(i, TensorHandle::wrap(env, tensors[i].tensor));
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("names", names);
  result.Set("tensors", handles);
  return result;
}

// What a Trainer made on the model took from it: each parameter's name, tensor, shape and whether it trains. A
// load that changes any of them (a Swin reduction bias added or dropped, say) leaves such a Trainer stale.
using ParameterLayout = std::vector<std::tuple<std::string, const void*, std::vector<int64_t>, bool>>;
ParameterLayout parameterLayout(models::Backbone& model) {
  ParameterLayout layout;
  for (const auto& item : model.named_parameters()) {
    const at::Tensor& value = item.value();
    layout.emplace_back(item.key(), value.unsafeGetTensorImpl(), value.sizes().vec(), value.requires_grad());
  }
  return layout;
}

Napi::Array namesToJs(Napi::Env env, const std::vector<std::string>& names) {
  Napi::Array array = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); ++i) array.Set(i, names[i]);
  return array;
}

// createModel(spec, seed?) -> Promise<ModelHandle>: the backbone is built and randomly initialised on a worker
// thread (a ViT-L's initialisation takes seconds), drawing from a generator of its own (models/init_random.h).
Napi::Value createModelJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw jsError(env, ErrorCode::InvalidOption, "spec must be an object");
    const Napi::Object spec = info[0].As<Napi::Object>();
    auto build = models::backboneBuilder(stringFromJs(spec.Get("family"), "spec.family"), JsSpecFields(spec));
    std::optional<uint64_t> seed;
    if (info[1].IsNumber()) seed = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    return runAsync(
        env, "pace.createModel",
        [build = std::move(build), seed] {
          models::InitRandomScope random(models::newInitGenerator(seed));
          return build();
        },
        [](Napi::Env env, std::shared_ptr<models::Backbone>& model) -> Napi::Value {
          return ModelHandle::wrap(env, model);
        });
  });
}

}  // namespace

Napi::Object ModelHandle::wrap(Napi::Env env, std::shared_ptr<models::Backbone> model) {
  // The constructor copies the pointer out of this External before New() returns.
  return AddonData::of(env).modelConstructor.New({Napi::External<std::shared_ptr<models::Backbone>>::New(env, &model)});
}

std::shared_ptr<ModelState> ModelHandle::stateOf(const Napi::Value& value, const std::string& what) {
  const Napi::Env env = value.Env();
  if (!isWrapped(value, Wrapped::Model)) throw jsError(env, ErrorCode::InvalidOption, what + " is not a Model");
  return Unwrap(value.As<Napi::Object>())->live(env);
}

std::unique_lock<std::mutex> lockFromJs(Napi::Env env, ModelState& state) {
  std::unique_lock<std::mutex> lock(state.mutex, std::defer_lock);
  if (state.work->busy() || !lock.try_lock()) {
    throw jsError(env, ErrorCode::Busy, "the model is busy (a forward, load or fit is running); await it first");
  }
  return lock;
}

Napi::Function ModelHandle::define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&ModelHandle::loadWeights>("loadWeights"),
                         InstanceMethod<&ModelHandle::saveWeights>("saveWeights"),
                         InstanceMethod<&ModelHandle::forward>("forward"),
                         InstanceMethod<&ModelHandle::forwardFeatures>("forwardFeatures"),
                         InstanceMethod<&ModelHandle::setTraining>("setTraining"),
                         InstanceAccessor<&ModelHandle::training>("training"),
                         InstanceMethod<&ModelHandle::parameters>("parameters"),
                         InstanceMethod<&ModelHandle::stateDict>("stateDict"),
                         InstanceMethod<&ModelHandle::to>("to"),
                         InstanceAccessor<&ModelHandle::device>("device"),
                         InstanceMethod<&ModelHandle::dispose>("dispose"),
                         InstanceMethod<&ModelHandle::addAdapters>("addAdapters"),
                         InstanceMethod<&ModelHandle::loadAdapters>("loadAdapters"),
                         InstanceMethod<&ModelHandle::saveAdapters>("saveAdapters"),
                         InstanceMethod<&ModelHandle::trainableParameters>("trainableParameters"),
                         InstanceMethod<&ModelHandle::weightsFingerprint>("weightsFingerprint"),
                         InstanceMethod<&ModelHandle::merged>("merged"),
                         InstanceMethod<&ModelHandle::gradients>("gradients"),
                         InstanceMethod<&ModelHandle::evaluate>("evaluate"),
                         InstanceMethod<&ModelHandle::resetHead>("resetHead"),
                     });
}

ModelHandle::ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw jsError(info.Env(), ErrorCode::InvalidOption,
                  "NativeModel cannot be constructed directly; use createModel()");
  }
  tagWrapped(info, Wrapped::Model);
  state_ = std::make_shared<ModelState>();
  state_->model = *info[0].As<Napi::External<std::shared_ptr<models::Backbone>>>().Data();
  state_->training = state_->model->is_training();
  state_->device = state_->model->parameters().front().device().str();
  env_ = info.Env();
  reportMemory(info.Env());
}

void ModelHandle::reportMemory(Napi::Env env) {
  int64_t bytes = 0;
  for (const auto& parameter : state_->model->parameters()) {
    if (parameter.device().is_cpu()) bytes += static_cast<int64_t>(parameter.nbytes());  // host memory only
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes - reportedBytes_);
  reportedBytes_ = bytes;
}

ModelHandle::~ModelHandle() {
  if (state_ && env_) Napi::MemoryManagement::AdjustExternalMemory(env_, -reportedBytes_);
}

std::shared_ptr<ModelState> ModelHandle::live(Napi::Env env) const {
  if (!state_) throw jsError(env, ErrorCode::InvalidState, "Model was disposed; it cannot be used any more");
  return state_;
}

namespace {

// A load's report, and the frozen weights' fingerprint it leaves (read in the job: afterwards the model may be busy).
struct LoadResult {
  models::LoadReport report;
  std::string frozenWeights;
};

}  // namespace

Napi::Value ModelHandle::loadWeights(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    const bool strict = info[1].ToBoolean().Value();
    std::optional<TensorMetadata> checked;
    if (!info[2].IsUndefined() && !info[2].IsNull()) checked = metadataFromJs(info[2]);
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, "pace.loadWeights",
        [state, path, strict, checked = std::move(checked)] {
          std::lock_guard<std::mutex> lock(state->mutex);
          const ParameterLayout before = parameterLayout(*state->model);
          LoadResult result{models::loadWeights(*state->model, path, strict, checked), {}};
          if (parameterLayout(*state->model) != before) ++state->trainableGeneration;
          result.frozenWeights = peft::frozenWeightsFingerprint(*state->model);
          return result;
        },
        [](Napi::Env env, LoadResult& loaded) -> Napi::Value {
          const models::LoadReport& report = loaded.report;
          Napi::Object result = Napi::Object::New(env);
          result.Set("frozenWeights", loaded.frozenWeights);
          result.Set("loaded", namesToJs(env, report.loaded));
          result.Set("missing", namesToJs(env, report.missing));
          result.Set("unexpected", namesToJs(env, report.unexpected));
          result.Set("resized", namesToJs(env, report.resized));
          result.Set("reinitialized", namesToJs(env, report.reinitialized));
          result.Set("ignored", namesToJs(env, report.ignored));
          return result;
        });
  });
}

Napi::Value ModelHandle::saveWeights(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    std::optional<TensorMetadata> metadata;
    if (info[1].IsObject()) metadata = metadataFromJs(info[1]);
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, "pace.saveWeights",
        [state, path, metadata] {
          std::lock_guard<std::mutex> lock(state->mutex);
          saveSafetensors(path, peft::mergedStateDict(*state->model), metadata);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value ModelHandle::runForward(const Napi::CallbackInfo& info, bool featuresOnly) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const Precision precision =
        info[1].IsUndefined() ? Precision::Fp32 : precisionFromName(stringFromJs(info[1], "precision"));
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, featuresOnly ? "pace.forwardFeatures" : "pace.forward",
        [state, images, featuresOnly, precision] {
          std::lock_guard<std::mutex> lock(state->mutex);
          torch::NoGradGuard noGrad;
          auto& model = *state->model;
          const auto device = model.parameters().front().device();
          const at::Tensor input = images.device() == device ? images : images.to(device);
          model.checkImages(input);
          const PrecisionScope arithmetic(precision, device.type());
          const at::Tensor output = featuresOnly ? model.forwardFeatures(input) : model.forward(input);
          const at::Tensor out = output.scalar_type() == at::kFloat ? output : output.to(at::kFloat);  // as documented
          // A view into a larger tensor (a headless ViT's class token, of all the tokens) would hold it all alive.
          const bool partOfMore =
              out.has_storage() && out.storage().nbytes() > static_cast<size_t>(out.numel()) * out.element_size();
          at::Tensor result = partOfMore ? out.clone(at::MemoryFormat::Contiguous) : out;
          // Resolved once the GPU is done: reading the logits (toFloat32Array) then never holds the JS thread.
          waitForDevice(result.device());
          return result;
        },
        [](Napi::Env env, at::Tensor& output) -> Napi::Value { return TensorHandle::wrap(env, std::move(output)); });
  });
}

Napi::Value ModelHandle::forward(const Napi::CallbackInfo& info) { return runForward(info, false); }
Napi::Value ModelHandle::forwardFeatures(const Napi::CallbackInfo& info) { return runForward(info, true); }

Napi::Value ModelHandle::setTraining(const Napi::CallbackInfo& info) {
  auto state = live(info.Env());
  const auto lock = lockFromJs(info.Env(), *state);
  state->model->train(info[0].ToBoolean().Value());
  state->training = state->model->is_training();
  return info.Env().Undefined();
}

Napi::Value ModelHandle::training(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Model);
  return Napi::Boolean::New(info.Env(), live(info.Env())->training.load());
}

// parameters() -> [{ name, shape, dtype }] in registration order (timm's order).
Napi::Value ModelHandle::parameters(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    const auto named = state->model->named_parameters();
    Napi::Array result = Napi::Array::New(env, named.size());
    uint32_t i = 0;
    for (const auto& item : named) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", item.key());
      entry.Set("shape", shapeToJs(env, item.value().sizes()));
      entry.Set("dtype", dtypeName(item.value().scalar_type()));
      result.Set(i++, entry);
    }
    return result;
  });
}

// stateDict() -> { names, tensors }: every parameter, copied, in registration (timm's state-dict) order.
Napi::Value ModelHandle::stateDict(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    std::vector<NamedTensor> copies;
    for (const auto& item : state->model->named_parameters())
      copies.push_back({item.key(), item.value().detach().clone()});
    return namedTensorsToJs(env, copies);
  });
}

Napi::Value ModelHandle::to(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto state = live(info.Env());
    const auto lock = lockFromJs(info.Env(), *state);
    state->model->to(deviceFromJs(info[0], "device"));
    state->device = state->model->parameters().front().device().str();
    reportMemory(info.Env());
    return info.Env().Undefined();
  });
}

Napi::Value ModelHandle::device(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Model);
  return Napi::String::New(info.Env(), live(info.Env())->device);
}

Napi::Value ModelHandle::dispose(const Napi::CallbackInfo& info) {
  if (state_) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reportedBytes_);
    state_->disposed = true;
  }
  state_.reset();  // work in flight keeps its own reference and finishes
  return info.Env().Undefined();
}

// addAdapters(type, rank, targets[]) -> names of the trainable parameters.
Napi::Value ModelHandle::addAdapters(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    peft::AdapterSetup setup;
    setup.type = stringFromJs(info[0], "type");
    setup.rank = info[1].ToNumber().Int64Value();
    if (info[2].IsArray()) {
      const auto targets = info[2].As<Napi::Array>();
      for (uint32_t i = 0; i < targets.Length(); ++i)
        setup.targets.push_back(stringFromJs(targets.Get(i), "targets[i]"));
    }
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    const Napi::Array trainable = namesToJs(env, peft::addAdapters(*state->model, setup));
    ++state->trainableGeneration;
    reportMemory(env);
    return trainable;
  });
}

Napi::Value ModelHandle::loadAdapters(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    const TensorMetadata checked = metadataFromJs(info[1]);
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, "pace.loadAdapters",
        [state, path, checked] {
          std::lock_guard<std::mutex> lock(state->mutex);
          const ParameterLayout before = parameterLayout(*state->model);
          peft::loadAdapters(*state->model, path, checked);
          if (parameterLayout(*state->model) != before) ++state->trainableGeneration;
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value ModelHandle::saveAdapters(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    const TensorMetadata metadata = metadataFromJs(info[1]);
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, "pace.saveAdapters",
        [state, path, metadata] {
          std::lock_guard<std::mutex> lock(state->mutex);
          saveSafetensors(path, peft::trainableParameters(*state->model), metadata);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value ModelHandle::trainableParameters(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    std::vector<std::string> names;
    for (const auto& named : peft::trainableParameters(*state->model)) names.push_back(named.name);
    return namesToJs(env, names);
  });
}

// weightsFingerprint() -> string: the frozen parameters' fingerprint (peft/setup.h).
Napi::Value ModelHandle::weightsFingerprint(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    return Napi::String::New(env, peft::frozenWeightsFingerprint(*state->model));
  });
}

// merged() -> Promise<NativeModel>: a plain backbone with the adapters folded in.
Napi::Value ModelHandle::merged(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const auto state = live(info.Env());
    return runInTurn(
        info.Env(), state->work, "pace.merged",
        [state] {
          std::lock_guard<std::mutex> lock(state->mutex);
          return peft::mergedCopy(*state->model);
        },
        [](Napi::Env env, std::shared_ptr<models::Backbone>& model) -> Napi::Value {
          return ModelHandle::wrap(env, std::move(model));
        });
  });
}

// gradients() -> { names, tensors }: each trainable parameter's gradient from the last step (zeros before any).
Napi::Value ModelHandle::gradients(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto state = live(env);
    const auto lock = lockFromJs(info.Env(), *state);
    std::vector<NamedTensor> copies;
    for (const auto& named : peft::trainableParameters(*state->model)) {
      const at::Tensor grad = named.tensor.grad();
      copies.push_back({named.name, grad.defined() ? grad.detach().clone() : at::zeros_like(named.tensor)});
    }
    return namedTensorsToJs(env, copies);
  });
}

// evaluate(images, labels, { batchSize, normalization?, extents?, classes?, precision?, sharded?, stop? })
//   -> Promise<{ samples, classes, top1, top5?, loss, confusion } | { stopped: true }>
// classes: the class indices that take part; sharded: every rank of the current distributed group evaluates its
// share (collective).
Napi::Value ModelHandle::evaluate(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const at::Tensor labels = TensorHandle::unwrap(info[1], "labels");
    if (!info[2].IsObject()) throw jsError(env, ErrorCode::InvalidOption, "evaluate options must be an object");
    const auto object = info[2].As<Napi::Object>();
    train::EvaluationOptions options;
    options.batchSize = static_cast<int64_t>(numberOr(object, "batchSize", static_cast<double>(options.batchSize)));
    options.normalization = normalizationFromJs(object.Get("normalization"));
    if (!object.Get("extents").IsUndefined()) options.extents = TensorHandle::unwrap(object.Get("extents"), "extents");
    if (object.Get("classes").IsArray()) {
      const auto classes = object.Get("classes").As<Napi::Array>();
      std::vector<int64_t> indices;
      for (uint32_t i = 0; i < classes.Length(); ++i) indices.push_back(classes.Get(i).ToNumber().Int64Value());
      options.classSubset = torch::tensor(indices, torch::kLong);
    }
    if (!object.Get("precision").IsUndefined())
      options.precision = precisionFromName(stringFromJs(object.Get("precision"), "precision"));
    std::shared_ptr<distributed::Group> group =
        object.Get("sharded").ToBoolean().Value() ? distributed::current() : nullptr;
    if (group && group->worldSize() < 2) group.reset();
    std::shared_ptr<std::atomic<bool>> stop;
    if (!object.Get("stop").IsUndefined()) stop = StopFlag::unwrap(object.Get("stop"), "evaluate's stop");
    const auto state = live(env);
    const auto claim = group ? claimCollectives(env, "a data-parallel evaluation") : nullptr;
    return runInTurn(
        env, state->work, "pace.evaluate",
        [state, claim, images, labels, options, group, stop]() mutable {
          options.shardAcross = group.get();
          options.stop = stop.get();
          std::lock_guard<std::mutex> lock(state->mutex);
          return train::evaluate(*state->model, images, labels, options);
        },
        [](Napi::Env env, train::EvaluationResult& r) -> Napi::Value {
          Napi::Object object = Napi::Object::New(env);
          if (r.stopped) {
            object.Set("stopped", true);
            return object;
          }
          object.Set("samples", static_cast<double>(r.samples));
          object.Set("classes", static_cast<double>(r.classes));
          object.Set("top1", r.top1);
          if (r.top5 >= 0) object.Set("top5", r.top5);
          object.Set("loss", r.loss);
          object.Set("confusion", TensorHandle::wrap(env, r.confusion));
          return object;
        });
  });
}

Napi::Value ModelHandle::resetHead(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto state = live(info.Env());
    const auto lock = lockFromJs(info.Env(), *state);
    state->model->resetHead();
    return info.Env().Undefined();
  });
}

void registerModelBindings(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = ModelHandle::define(env);
  AddonData::of(env).modelConstructor = Napi::Persistent(constructor);
  exports.Set("NativeModel", constructor);
  exports.Set("createModel", Napi::Function::New(env, createModelJs, "createModel"));
}

}  // namespace pace::addon
