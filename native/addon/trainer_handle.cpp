#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "addon_data.h"
#include "async.h"
#include "bindings.h"
#include "collective_claim.h"
#include "convert.h"
#include "js_errors.h"
#include "model_handle.h"
#include "pace_core.h"
#include "tensor_handle.h"
#include "type_tags.h"

namespace pace::addon {

namespace {

// The user's PACE options over the core's defaults (peft/pace.h owns them and the names).
peft::PaceConfig paceFromJs(const Napi::Object& pace) {
  peft::PaceConfig config;
  config.sigma = numberOr(pace, "sigma", config.sigma);
  config.lambda = numberOr(pace, "lambda", config.lambda);
  if (!pace.Get("blockStart").IsUndefined()) config.blockStart = static_cast<int64_t>(numberOr(pace, "blockStart", 0));
  if (!pace.Get("noise").IsUndefined()) config.kind = peft::noiseKindFromName(stringFromJs(pace.Get("noise"), "noise"));
  if (!pace.Get("noiseShape").IsUndefined())
    config.shape = peft::noiseShapeFromName(stringFromJs(pace.Get("noiseShape"), "noiseShape"));
  if (!pace.Get("sigmaSchedule").IsUndefined())
    config.schedule = peft::sigmaScheduleFromName(stringFromJs(pace.Get("sigmaSchedule"), "sigmaSchedule"));
  if (!pace.Get("variant").IsUndefined())
    config.variant = peft::paceVariantFromName(stringFromJs(pace.Get("variant"), "variant"));
  config.lazyInterval = static_cast<int64_t>(numberOr(pace, "lazyInterval", static_cast<double>(config.lazyInterval)));
  config.datasetSize = static_cast<int64_t>(numberOr(pace, "datasetSize", static_cast<double>(config.datasetSize)));
  config.adapterL1 = numberOr(pace, "adapterL1", config.adapterL1);
  if (!pace.Get("noiseOn").IsUndefined())
    config.noiseOn = peft::noiseTargetFromName(stringFromJs(pace.Get("noiseOn"), "noiseOn"));
  config.copies = static_cast<int64_t>(numberOr(pace, "copies", static_cast<double>(config.copies)));
  return config;
}

// An options object's `stepGraphs` ('auto', 'off', 'rehearse'); Off when absent.
train::StepGraphMode stepGraphsFromJs(const Napi::Object& options) {
  const Napi::Value value = options.Get("stepGraphs");
  return value.IsUndefined() ? train::StepGraphMode::Off
                             : train::stepGraphModeFromName(stringFromJs(value, "stepGraphs"));
}

// { clsLoss, paceLoss, totalLoss, correct, counted, gradNorm?, fpDistance?, graph? }
Napi::Object stepResultToJs(Napi::Env env, const train::StepResult& result) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("clsLoss", result.clsLoss);
  object.Set("paceLoss", result.paceLoss);
  object.Set("totalLoss", result.totalLoss);
  object.Set("correct", static_cast<double>(result.correct));
  object.Set("counted", static_cast<double>(result.counted));
  if (result.gradNorm >= 0) object.Set("gradNorm", result.gradNorm);
  if (result.fpDistance >= 0) object.Set("fpDistance", result.fpDistance);
  if (!result.graph.empty()) object.Set("graph", result.graph);
  return object;
}

// runEpoch's onBatch(step, steps, loss, lr), called from the training thread without waiting for JavaScript. Its
// thread-safe function keeps Node running until released: by the epoch when it ends, else (a job that never ran)
// when the last holder lets go.
class BatchCallback {
 public:
  BatchCallback(Napi::Env env, const Napi::Function& callback)
      : tsfn_(Napi::ThreadSafeFunction::New(env, callback, "pace.onBatch", 0, 1)) {}
  BatchCallback(const BatchCallback&) = delete;
  BatchCallback& operator=(const BatchCallback&) = delete;
  ~BatchCallback() { release(); }

  void release() {
    if (!released_.exchange(true)) tsfn_.Release();
  }

  void call(const train::BatchProgress& p) {
    tsfn_.NonBlockingCall([p](Napi::Env env, Napi::Function callback) {
      callback.Call({Napi::Number::New(env, static_cast<double>(p.step)),
                     Napi::Number::New(env, static_cast<double>(p.steps)), Napi::Number::New(env, p.totalLoss),
                     Napi::Number::New(env, p.learningRate)});
    });
  }

 private:
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<bool> released_{false};
};

class TrainerHandle : public Napi::ObjectWrap<TrainerHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {
                           InstanceMethod<&TrainerHandle::step>("step"),
                           InstanceMethod<&TrainerHandle::profileSteps>("profileSteps"),
                           InstanceMethod<&TrainerHandle::sigmaPerLinear>("sigmaPerLinear"),
                           InstanceMethod<&TrainerHandle::lastNoise>("lastNoise"),
                           InstanceMethod<&TrainerHandle::runEpoch>("runEpoch"),
                           InstanceMethod<&TrainerHandle::abort>("abort"),
                           InstanceAccessor<&TrainerHandle::iteration>("iteration"),
                           InstanceMethod<&TrainerHandle::saveState>("saveState"),
                           InstanceMethod<&TrainerHandle::checkState>("checkState"),
                           InstanceMethod<&TrainerHandle::loadState>("loadState"),
                           InstanceMethod<&TrainerHandle::setLearningRate>("setLearningRate"),
                           InstanceMethod<&TrainerHandle::options>("options"),
                           InstanceMethod<&TrainerHandle::dispose>("dispose"),
                           InstanceMethod<&TrainerHandle::check>("check"),
                       });
  }

  // new NativeTrainer(model, { lr, weightDecay, beta1, beta2, eps }, pace, seed, precision?)
  explicit TrainerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerHandle>(info) {
    const Napi::Env env = info.Env();
    tagWrapped(info, Wrapped::Trainer);
    guard(env, [&] {
      model_ = ModelHandle::stateOf(info[0], "model");
      if (!info[1].IsObject() || !info[2].IsObject())
        throw jsError(env, ErrorCode::InvalidOption, "optimizer and pace must be objects");
      const auto optimizer = info[1].As<Napi::Object>();
      train::OptimizerConfig config;
      config.lr = numberOr(optimizer, "lr", config.lr);
      config.weightDecay = numberOr(optimizer, "weightDecay", config.weightDecay);
      config.beta1 = numberOr(optimizer, "beta1", config.beta1);
      config.beta2 = numberOr(optimizer, "beta2", config.beta2);
      config.eps = numberOr(optimizer, "eps", config.eps);
      config.clipGradNorm = numberOr(optimizer, "clipGradNorm", config.clipGradNorm);
      config.samRho = numberOr(optimizer, "samRho", config.samRho);
      config.gradientPenalty = numberOr(optimizer, "gradientPenalty", config.gradientPenalty);
      config.gradientPenaltyRadius = numberOr(optimizer, "gradientPenaltyRadius", config.gradientPenaltyRadius);
      const uint64_t seed = static_cast<uint64_t>(info[3].ToNumber().Int64Value());
      const Precision precision = info.Length() > 4 && !info[4].IsUndefined()
                                      ? precisionFromName(stringFromJs(info[4], "precision"))
                                      : Precision::Fp32;
      // Converted before the model's lock is taken: its getters may run any JavaScript.
      peft::PaceConfig pace = paceFromJs(info[2].As<Napi::Object>());
      const auto lock = lockFromJs(info.Env(), *model_);
      // The current distributed group, if any, makes the trainer data-parallel (a broadcast from rank 0 here), read
      // once: a group made meanwhile on another thread must not get a broadcast without the claim.
      const auto group = distributed::current();
      // Held through the broadcast: a check alone would let a worker thread's barrier start in between.
      const auto claim = group ? claimCollectives(env, "a data-parallel Trainer (its broadcast)") : nullptr;
      trainer_ = std::make_shared<train::Trainer>(model_->model, config, std::move(pace), seed, precision, group);
      generation_ = model_->trainableGeneration;
      // What the trainer will hold beside the model on the host: AdamW's two moments and the gradients.
      for (const auto& named : peft::trainableParameters(*model_->model))
        if (named.tensor.device().is_cpu()) reportedBytes_ += 3 * static_cast<int64_t>(named.tensor.nbytes());
      env_ = env;
      Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
    });
  }

  ~TrainerHandle() override {
    if (trainer_ && env_) Napi::MemoryManagement::AdjustExternalMemory(env_, -reportedBytes_);
  }

 private:
  // The trainer, if it and its model can still be used: not disposed, and the model's trainable parameters
  // still those the trainer's optimizer holds.
  std::shared_ptr<train::Trainer> live(Napi::Env env) const {
    if (!trainer_) throw jsError(env, ErrorCode::InvalidState, "Trainer was disposed; it cannot be used any more");
    if (model_->disposed)
      throw jsError(env, ErrorCode::InvalidState, "the trainer's Model was disposed; the trainer cannot use it");
    if (model_->trainableGeneration != generation_) throw jsError(env, ErrorCode::InvalidState, kParametersChanged);
    return trainer_;
  }

  static constexpr const char* kParametersChanged =
      "the model's parameters changed (addAdapters, or a load that added or dropped one) after this Trainer was "
      "made, so its optimizer would not train them as they are: create the Trainer after addAdapters() and loads";

  // In the job, under the model's lock: a load queued before it (not awaited) may have changed the parameters
  // after the call was checked on the JS thread.
  static void checkParametersUnchanged(const ModelState& model, uint64_t generation) {
    if (model.trainableGeneration != generation) throw StateError(kParametersChanged);
  }

  // A data-parallel trainer's call holds the process group's collectives until its job ends (collective_claim.h).
  static std::shared_ptr<CollectiveClaim> collectivesOf(Napi::Env env, const std::shared_ptr<train::Trainer>& trainer,
                                                        const char* call) {
    if (trainer->worldSize() == 1) return nullptr;
    return claimCollectives(env, call);
  }

  // dispose(): frees the optimizer's state; work in flight keeps its own reference and finishes.
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    if (trainer_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reportedBytes_);
    trainer_.reset();
    model_.reset();  // nor does it keep the model (every method checks live() before it uses either)
    return info.Env().Undefined();
  }

  // check(): throws what any other call would (disposed, model disposed or re-adapted), before work begins.
  Napi::Value check(const Napi::CallbackInfo& info) {
    live(info.Env());
    return info.Env().Undefined();
  }

  // step(images, targets, { noise?, indices?, diagnostics?, stepGraphs? })
  //   -> Promise<{ clsLoss, paceLoss, totalLoss, correct, counted, gradNorm?, fpDistance?, graph? }>
  Napi::Value step(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      train::StepInputs inputs;
      train::StepGraphMode graphs = train::StepGraphMode::Off;
      inputs.images = TensorHandle::unwrap(info[0], "images");
      inputs.targets = TensorHandle::unwrap(info[1], "targets");
      if (info[2].IsObject()) {
        const auto options = info[2].As<Napi::Object>();
        if (options.Get("noise").IsObject()) {
          const auto record = options.Get("noise").As<Napi::Object>();
          const Napi::Array keys = record.GetPropertyNames();
          for (uint32_t i = 0; i < keys.Length(); ++i) {
            const std::string name = keys.Get(i).ToString().Utf8Value();
            inputs.noise[name] = TensorHandle::unwrap(record.Get(name), "noise['" + name + "']");
          }
        }
        if (!options.Get("indices").IsUndefined())
          inputs.indices = TensorHandle::unwrap(options.Get("indices"), "indices");
        inputs.diagnostics = options.Get("diagnostics").ToBoolean().Value();
        graphs = stepGraphsFromJs(options);
      }
      const auto trainer = live(env);
      return runInTurn(
          env, model_->work, "pace.trainStep",
          [model = model_, claim = collectivesOf(env, trainer, "a data-parallel trainStep"), generation = generation_,
           trainer, inputs, graphs] {
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            return trainer->step(inputs, graphs);
          },
          [](Napi::Env env, train::StepResult& result) -> Napi::Value { return stepResultToJs(env, result); });
    });
  }

  // profileSteps(images, targets, { steps, trace, stepGraphs? }) -> Promise<StepResult[]>: the steps under the
  // profiler (system/profiler.h), their Chrome trace written to `trace`; the GPU's kernels too on a CUDA model.
  Napi::Value profileSteps(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      train::StepInputs inputs;
      inputs.images = TensorHandle::unwrap(info[0], "images");
      inputs.targets = TensorHandle::unwrap(info[1], "targets");
      if (!info[2].IsObject()) throw jsError(env, ErrorCode::InvalidOption, "options must be an object");
      const auto options = info[2].As<Napi::Object>();
      const auto steps = static_cast<int64_t>(numberOr(options, "steps", 5));
      if (steps < 1) throw jsError(env, ErrorCode::InvalidOption, "steps must be >= 1");
      const std::string trace = pathFromJs(options.Get("trace"), "trace");
      const train::StepGraphMode graphs = stepGraphsFromJs(options);
      const auto trainer = live(env);
      return runInTurn(
          env, model_->work, "pace.profileSteps",
          [model = model_, claim = collectivesOf(env, trainer, "a data-parallel profileSteps"),
           generation = generation_, trainer, inputs, steps, trace, graphs] {
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            const bool cuda = model->model->parameters().front().is_cuda();
            std::vector<train::StepResult> results;
            profileToTrace(trace, cuda, [&] {
              for (int64_t s = 0; s < steps; ++s) results.push_back(trainer->step(inputs, graphs));
            });
            return results;
          },
          [](Napi::Env env, std::vector<train::StepResult>& results) -> Napi::Value {
            Napi::Array array = Napi::Array::New(env, results.size());
            for (uint32_t i = 0; i < results.size(); ++i) array.Set(i, stepResultToJs(env, results[i]));
            return array;
          });
    });
  }

  Napi::Value sigmaPerLinear(const Napi::CallbackInfo& info) {
    Napi::Object result = Napi::Object::New(info.Env());
    for (const auto& [name, sigma] : live(info.Env())->sigmaPerLinear()) result.Set(name, sigma);
    return result;
  }

  // runEpoch(images, labels, { batchSize, epoch, shuffleSeed, diagnostics, extents?, schedule?, scheduleEachStep?,
  //          ... },
  //          onBatch?)
  //   -> Promise<EpochResult>. onBatch(step, steps, loss, lr) is called from the training thread, non-blocking.
  Napi::Value runEpoch(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const at::Tensor images = TensorHandle::unwrap(info[0], "images");
      const at::Tensor labels = TensorHandle::unwrap(info[1], "labels");
      if (!info[2].IsObject()) throw jsError(env, ErrorCode::InvalidOption, "options must be an object");
      const auto options = info[2].As<Napi::Object>();
      train::EpochOptions epoch;
      epoch.batchSize = static_cast<int64_t>(numberOr(options, "batchSize", static_cast<double>(epoch.batchSize)));
      epoch.epoch = static_cast<int64_t>(numberOr(options, "epoch", static_cast<double>(epoch.epoch)));
      epoch.shuffleSeed =
          static_cast<uint64_t>(numberOr(options, "shuffleSeed", static_cast<double>(epoch.shuffleSeed)));
      epoch.diagnostics = options.Get("diagnostics").ToBoolean().Value();
      epoch.normalization = normalizationFromJs(options.Get("normalization"));
      if (!options.Get("extents").IsUndefined())
        epoch.extents = TensorHandle::unwrap(options.Get("extents"), "extents");
      epoch.augmentCrop =
          static_cast<int64_t>(numberOr(options, "augmentCrop", static_cast<double>(epoch.augmentCrop)));
      epoch.augmentFlip = options.Get("augmentFlip").ToBoolean().Value();
      epoch.resizedCrop = resizedCropFromJs(options.Get("resizedCrop"));
      epoch.randAugment = randAugmentFromJs(options.Get("randAugment"));
      // One resampling for both, as timm's create_transform(interpolation=...).
      if (!options.Get("interpolation").IsUndefined()) {
        const data::Interpolation interpolation = interpolationFromJs(options.Get("interpolation"), "interpolation");
        if (epoch.resizedCrop) epoch.resizedCrop->interpolation = interpolation;
        if (epoch.randAugment) epoch.randAugment->interpolation = interpolation;
      }
      epoch.randomErasing = randomErasingFromJs(options.Get("randomErasing"));
      epoch.mixup = mixupFromJs(options.Get("mixup"));
      epoch.stepGraphs = stepGraphsFromJs(options);
      epoch.datasetChanged = options.Get("datasetChanged").ToBoolean().Value();
      if (options.Get("schedule").IsObject()) {
        epoch.schedule = scheduleFromJs(options.Get("schedule").As<Napi::Object>());
        epoch.scheduleEachStep = options.Get("scheduleEachStep").ToBoolean().Value();
      }
      const bool stopRequested = options.Get("stopRequested").ToBoolean().Value();
      // After the options, whose getters may have disposed this trainer.
      const auto trainer = live(env);
      // Made after the checks that can throw; one made but never run is released when the job is destroyed.
      std::shared_ptr<BatchCallback> progress;
      if (info[3].IsFunction()) progress = std::make_shared<BatchCallback>(env, info[3].As<Napi::Function>());
      // Before the stop flag changes: a refused epoch must leave the running one's flag alone.
      auto claim = collectivesOf(env, trainer, "a data-parallel fit's epoch");
      // A stop asked for before the epoch (data-parallel: agreed through its first step by every rank).
      abort_->store(stopRequested);
      return runInTurn(
          env, model_->work, "pace.runEpoch",
          [model = model_, claim = std::move(claim), generation = generation_, trainer, abort = abort_, images, labels,
           epoch, progress] {
            std::function<void(const train::BatchProgress&)> onBatch;
            if (progress) onBatch = [&progress](const train::BatchProgress& p) { progress->call(p); };
            struct ReleaseAtEnd {
              BatchCallback* callback;
              ~ReleaseAtEnd() {
                if (callback) callback->release();
              }
            } releaseAtEnd{progress.get()};
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            return trainer->runEpoch(images, labels, epoch, abort.get(), onBatch);
          },
          [](Napi::Env env, train::EpochResult& r) -> Napi::Value {
            Napi::Object object = Napi::Object::New(env);
            object.Set("steps", static_cast<double>(r.steps));
            object.Set("samples", static_cast<double>(r.samples));
            object.Set("clsLoss", r.clsLoss);
            object.Set("paceLoss", r.paceLoss);
            object.Set("totalLoss", r.totalLoss);
            object.Set("trainAccuracy", r.trainAccuracy);
            object.Set("seconds", r.seconds);
            object.Set("communicationSeconds", r.communicationSeconds);
            object.Set("aborted", r.aborted);
            if (r.gradNorm >= 0) object.Set("gradNorm", r.gradNorm);
            if (r.fpDistance >= 0) object.Set("fpDistance", r.fpDistance);
            if (r.learningRate >= 0) object.Set("learningRate", r.learningRate);
            Napi::Float64Array stepLosses = Napi::Float64Array::New(env, r.stepLosses.size());
            std::copy(r.stepLosses.begin(), r.stepLosses.end(), stepLosses.Data());
            object.Set("stepLosses", stepLosses);
            Napi::Float64Array stepRates = Napi::Float64Array::New(env, r.stepRates.size());
            std::copy(r.stepRates.begin(), r.stepRates.end(), stepRates.Data());
            object.Set("stepRates", stepRates);
            Napi::Object graphs = Napi::Object::New(env);
            graphs.Set("captured", static_cast<double>(r.graphs.captured));
            graphs.Set("replayed", static_cast<double>(r.graphs.replayed));
            graphs.Set("warmups", static_cast<double>(r.graphs.warmups));
            graphs.Set("eager", static_cast<double>(r.graphs.eager));
            if (!r.graphs.eagerReason.empty()) graphs.Set("eagerReason", r.graphs.eagerReason);
            object.Set("stepGraphs", graphs);
            return object;
          });
    });
  }

  // iteration: steps taken so far (readable while a step runs).
  Napi::Value iteration(const Napi::CallbackInfo& info) {
    requireReceiver(info, Wrapped::Trainer);
    return Napi::Number::New(info.Env(), static_cast<double>(live(info.Env())->iteration()));
  }

  // abort(): the running epoch stops after its current step.
  Napi::Value abort(const Napi::CallbackInfo& info) {
    abort_->store(true);
    return info.Env().Undefined();
  }

  // saveState(path, metadata) -> Promise<void>: the trainer's whole state, atomically, as safetensors.
  // Data-parallel, every rank calls it (the state gathers every rank's generators); a null path takes part
  // without writing (the ranks other than the one that writes).
  Napi::Value saveState(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const std::string path = info[0].IsNull() ? std::string() : pathFromJs(info[0], "path");
      const TensorMetadata metadata = metadataFromJs(info[1]);
      const auto trainer = live(env);
      return runInTurn(
          env, model_->work, "pace.saveState",
          [model = model_, claim = collectivesOf(env, trainer, "a data-parallel checkpoint"), generation = generation_,
           trainer, path, metadata] {
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            const auto state = trainer->state();
            if (!path.empty()) saveCheckpoint(path, state, metadata);
            return true;
          },
          [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
    });
  }

  // checkState() -> Promise<void>: rejects unless the state saveState would write is finite (run before a run
  // folder's files are rearranged for it).
  Napi::Value checkState(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const auto trainer = live(env);
      return runInTurn(
          env, model_->work, "pace.checkState",
          [model = model_, claim = collectivesOf(env, trainer, "a data-parallel checkpoint's check"),
           generation = generation_, trainer] {
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            trainer->checkFiniteState();
            return true;
          },
          [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
    });
  }

  // loadState(path) -> Promise<metadata>: restores a state written by saveState.
  Napi::Value loadState(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const std::string path = pathFromJs(info[0], "path");
      const auto trainer = live(env);
      return runInTurn(
          env, model_->work, "pace.loadState",
          [model = model_, claim = collectivesOf(env, trainer, "a data-parallel checkpoint's load"),
           generation = generation_, trainer, path] {
            SafetensorsContents contents = loadCheckpoint(path);
            std::lock_guard<std::mutex> lock(model->mutex);
            checkParametersUnchanged(*model, generation);
            trainer->restoreState(contents.tensors);
            return contents.metadata;
          },
          [](Napi::Env env, std::optional<TensorMetadata>& metadata) -> Napi::Value {
            return metadataToJs(env, metadata);
          });
    });
  }

  Napi::Value lastNoise(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const auto trainer = live(env);
      const auto lock = lockFromJs(info.Env(), *model_);
      Napi::Object result = Napi::Object::New(env);
      // Copies: a replayed step graph writes its draws into the same tensors, and a view() must not write into them.
      for (const auto& [name, draw] : trainer->lastNoise()) result.Set(name, TensorHandle::wrap(env, draw.clone()));
      return result;
    });
  }

  // options() -> { optimizer, pace, rank, worldSize }: the settings in force, the core's defaults filled in.
  Napi::Value options(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    const auto trainer = live(env);
    const train::OptimizerConfig& config = trainer->optimizerConfig();
    Napi::Object optimizer = Napi::Object::New(env);
    optimizer.Set("lr", config.lr);
    optimizer.Set("weightDecay", config.weightDecay);
    optimizer.Set("beta1", config.beta1);
    optimizer.Set("beta2", config.beta2);
    optimizer.Set("eps", config.eps);
    optimizer.Set("clipGradNorm", config.clipGradNorm);
    optimizer.Set("samRho", config.samRho);
    optimizer.Set("gradientPenalty", config.gradientPenalty);
    optimizer.Set("gradientPenaltyRadius", config.gradientPenaltyRadius);
    const peft::PaceConfig& paceConfig = trainer->pace().config();
    Napi::Object pace = Napi::Object::New(env);
    pace.Set("sigma", paceConfig.sigma);
    pace.Set("lambda", paceConfig.lambda);
    pace.Set("blockStart", static_cast<double>(trainer->pace().firstNoisyBlock()));
    pace.Set("noise", peft::nameOf(paceConfig.kind));
    pace.Set("noiseShape", peft::nameOf(paceConfig.shape));
    pace.Set("sigmaSchedule", peft::nameOf(paceConfig.schedule));
    pace.Set("variant", peft::nameOf(paceConfig.variant));
    pace.Set("lazyInterval", static_cast<double>(paceConfig.lazyInterval));
    pace.Set("adapterL1", paceConfig.adapterL1);
    pace.Set("noiseOn", peft::nameOf(paceConfig.noiseOn));
    pace.Set("copies", static_cast<double>(paceConfig.copies));
    if (paceConfig.variant == peft::PaceVariant::Fast)
      pace.Set("datasetSize", static_cast<double>(paceConfig.datasetSize));
    Napi::Object result = Napi::Object::New(env);
    result.Set("optimizer", optimizer);
    result.Set("pace", pace);
    result.Set("rank", trainer->rank());
    result.Set("worldSize", trainer->worldSize());
    return result;
  }

  Napi::Value setLearningRate(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      const double rate = info[0].ToNumber().DoubleValue();  // first: its valueOf may dispose this trainer
      const auto trainer = live(env);
      const auto lock = lockFromJs(env, *model_);
      trainer->setLearningRate(rate);
      return env.Undefined();
    });
  }

  std::shared_ptr<ModelState> model_;
  std::shared_ptr<train::Trainer> trainer_;
  uint64_t generation_ = 0;    // the model's trainableGeneration when the trainer took its parameters
  int64_t reportedBytes_ = 0;  // host memory reported to V8
  napi_env env_ = nullptr;
  std::shared_ptr<std::atomic<bool>> abort_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

void registerTrainerBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTrainer", TrainerHandle::define(env));
}

}  // namespace pace::addon
