#include <napi.h>

#include "addon_data.h"
#include "async.h"
#include "bindings.h"
#include "convert.h"
#include "model_handle.h"
#include "tensor_handle.h"
#include "train/trainer.h"

namespace pace::addon {

namespace {

double numberOr(const Napi::Object& object, const char* name, double fallback) {
  const Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsNumber()) throw Napi::TypeError::New(object.Env(), std::string(name) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

std::string stringOr(const Napi::Object& object, const char* name, const char* fallback) {
  const Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsString()) throw Napi::TypeError::New(object.Env(), std::string(name) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

// The TypeScript layer has validated the names (zod); unknown ones cannot reach here.
peft::PaceConfig paceFromJs(const Napi::Object& pace) {
  peft::PaceConfig config;
  config.sigma = numberOr(pace, "sigma", 0.0);
  config.lambda = numberOr(pace, "lambda", 0.0);
  config.blockStart = static_cast<int64_t>(numberOr(pace, "blockStart", -1));
  const std::string noise = stringOr(pace, "noise", "multiplicative");
  config.kind = noise == "additive"  ? peft::NoiseKind::Additive
                : noise == "dropout" ? peft::NoiseKind::Dropout
                                     : peft::NoiseKind::Multiplicative;
  config.shape = stringOr(pace, "noiseShape", "BC") == "BTC" ? peft::NoiseShape::PerToken : peft::NoiseShape::PerRow;
  const std::string schedule = stringOr(pace, "sigmaSchedule", "decreasing");
  config.schedule = schedule == "shared"       ? peft::SigmaSchedule::Shared
                    : schedule == "increasing" ? peft::SigmaSchedule::Increasing
                                               : peft::SigmaSchedule::Decreasing;
  const std::string variant = stringOr(pace, "variant", "pace");
  config.variant = variant == "lazy"   ? peft::PaceVariant::Lazy
                   : variant == "fast" ? peft::PaceVariant::Fast
                   : variant == "fpa"  ? peft::PaceVariant::Fpa
                                       : peft::PaceVariant::Pace;
  config.lazyInterval = static_cast<int64_t>(numberOr(pace, "lazyInterval", 2));
  config.datasetSize = static_cast<int64_t>(numberOr(pace, "datasetSize", 0));
  return config;
}

class TrainerHandle : public Napi::ObjectWrap<TrainerHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {
                           InstanceMethod<&TrainerHandle::step>("step"),
                           InstanceMethod<&TrainerHandle::sigmaPerLinear>("sigmaPerLinear"),
                           InstanceMethod<&TrainerHandle::lastNoise>("lastNoise"),
                           InstanceMethod<&TrainerHandle::setLearningRate>("setLearningRate"),
                       });
  }

  // new NativeTrainer(model, { lr, weightDecay, beta1, beta2, eps }, pace, seed)
  explicit TrainerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerHandle>(info) {
    const Napi::Env env = info.Env();
    guard(env, [&] {
      model_ = ModelHandle::stateOf(info[0], "model");
      if (!info[1].IsObject() || !info[2].IsObject())
        throw Napi::TypeError::New(env, "optimizer and pace must be objects");
      const auto optimizer = info[1].As<Napi::Object>();
      train::OptimizerConfig config;
      config.lr = numberOr(optimizer, "lr", config.lr);
      config.weightDecay = numberOr(optimizer, "weightDecay", config.weightDecay);
      config.beta1 = numberOr(optimizer, "beta1", config.beta1);
      config.beta2 = numberOr(optimizer, "beta2", config.beta2);
      config.eps = numberOr(optimizer, "eps", config.eps);
      const uint64_t seed = static_cast<uint64_t>(info[3].ToNumber().Int64Value());
      std::lock_guard<std::mutex> lock(model_->mutex);
      trainer_ = std::make_shared<train::Trainer>(model_->model, config, paceFromJs(info[2].As<Napi::Object>()), seed);
    });
  }

 private:
  // step(images, targets, { noise?, indices?, diagnostics? })
  //   -> Promise<{ clsLoss, paceLoss, totalLoss, correct, counted, gradNorm?, fpDistance? }>
  Napi::Value step(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      train::StepInputs inputs;
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
      }
      return runAsync(
          env, "pace.trainStep",
          [model = model_, trainer = trainer_, inputs] {
            std::lock_guard<std::mutex> lock(model->mutex);
            return trainer->step(inputs);
          },
          [](Napi::Env env, train::StepResult& result) -> Napi::Value {
            Napi::Object object = Napi::Object::New(env);
            object.Set("clsLoss", result.clsLoss);
            object.Set("paceLoss", result.paceLoss);
            object.Set("totalLoss", result.totalLoss);
            object.Set("correct", static_cast<double>(result.correct));
            object.Set("counted", static_cast<double>(result.counted));
            if (result.gradNorm >= 0) object.Set("gradNorm", result.gradNorm);
            if (result.fpDistance >= 0) object.Set("fpDistance", result.fpDistance);
            return object;
          });
    });
  }

  Napi::Value sigmaPerLinear(const Napi::CallbackInfo& info) {
    Napi::Object result = Napi::Object::New(info.Env());
    for (const auto& [name, sigma] : trainer_->sigmaPerLinear()) result.Set(name, sigma);
    return result;
  }

  Napi::Value lastNoise(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      std::lock_guard<std::mutex> lock(model_->mutex);
      Napi::Object result = Napi::Object::New(env);
      for (const auto& [name, draw] : trainer_->lastNoise()) result.Set(name, TensorHandle::wrap(env, draw));
      return result;
    });
  }

  Napi::Value setLearningRate(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(model_->mutex);
    trainer_->setLearningRate(info[0].ToNumber().DoubleValue());
    return info.Env().Undefined();
  }

  std::shared_ptr<ModelState> model_;
  std::shared_ptr<train::Trainer> trainer_;
};

}  // namespace

void registerTrainerBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTrainer", TrainerHandle::define(env));
}

}  // namespace pace::addon
